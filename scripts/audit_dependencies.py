"""Audit the locked dependencies (requirements/lock.txt) for known vulnerabilities.

Why this and not only pip-audit: pip-audit needs OSV (api.osv.dev) or PyPI's per-release JSON API
(`/pypi/<name>/<version>/json`). Where neither is reachable (our build machines reach PyPI through a
mirror that serves only the project-level JSON), pip-audit skips every package and, without
`--strict`, prints "No known vulnerabilities found". This audit uses the best source it can reach,
per package, and says exactly how far each package was checked:

1. OSV `querybatch`: every advisory affecting the pinned version (what `pip-audit -s osv` uses);
2. PyPI per-release JSON: the advisories PyPI lists for the pinned version (pip-audit's default);
3. PyPI project JSON: the advisories of the *latest* release only. For a pin that is the latest
   release this is the whole answer (status `verified`). For an older pin, an advisory still open on
   the latest release is reported as likely affecting the pin, and the pin is `partial`: advisories
   fixed between the pin and the latest release cannot be seen from this source.

Findings not listed in the accepted file (each with a reason and an expiry date) fail the audit.
Exit codes: 0 clean, 1 unaccepted findings or packages that could not be checked at all (or, with
--strict, any package not fully verified), 2 bad input (lock, pyproject or accepted file).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

REPO = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)\s*(?:#.*)?$")
OSV_BATCH = 1000  # OSV's querybatch limit

VERIFIED, PARTIAL, UNREACHABLE = "verified", "partial", "unreachable"


class AuditInputError(ValueError):
    """The lock, pyproject or accepted file is wrong: exit 2 with a message naming the line."""


def normalize(name: str) -> str:
    """PEP 503 name: what PyPI and OSV index by."""
    return canonicalize_name(name)


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    line: int


@dataclass
class Finding:
    package: str
    version: str
    id: str
    aliases: list[str]
    summary: str
    fixed_in: list[str]
    source: str
    certainty: str  # "affects" (the source says so) or "open on latest" (partial pins)
    accepted: str | None = None  # the accepted file's reason, when it is accepted

    def ids(self) -> set[str]:
        return {self.id, *self.aliases}


@dataclass
class PackageResult:
    package: str
    version: str
    status: str
    source: str
    latest: str | None = None
    detail: str = ""
    yanked: str | None = None
    findings: list[Finding] = field(default_factory=list)


@dataclass(frozen=True)
class Accepted:
    ids: tuple[str, ...]  # an advisory id or alias; several when one reason covers a family of reports
    package: str
    reason: str
    until: dt.date


# ---------------------------------------------------------------- inputs


def read_lock(path: Path) -> list[Pin]:
    """`name==version` lines (pip freeze format); comments and blank lines allowed, nothing else."""
    if not path.is_file():
        raise AuditInputError(f"{path}: no such lock file (make lock writes it)")
    pins: list[Pin] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        if not match:
            raise AuditInputError(f"{path}:{number}: not a `name==version` pin: {raw!r}")
        name, version = normalize(match.group(1)), match.group(2)
        try:
            Version(version)
        except InvalidVersion:
            raise AuditInputError(f"{path}:{number}: {version!r} is not a valid version") from None
        if name in seen:
            raise AuditInputError(f"{path}:{number}: {name} is pinned twice (also line {seen[name]})")
        seen[name] = number
        pins.append(Pin(name, version, number))
    if not pins:
        raise AuditInputError(f"{path}: the lock pins no packages")
    return pins


def check_lock_covers(pyproject: Path, pins: Sequence[Pin], extras: Iterable[str] = ("dev",)) -> None:
    """Every dependency of the project (and the named extras) is pinned, at a version it accepts.

    A lock that drifted from pyproject.toml would make the audit check the wrong versions."""
    data = tomllib.loads(pyproject.read_text())
    project = data.get("project", {})
    wanted = list(project.get("dependencies", []))
    for extra in extras:
        wanted += project.get("optional-dependencies", {}).get(extra, [])
    by_name = {p.name: p for p in pins}
    problems = []
    for spec in wanted:
        try:
            req = Requirement(spec)
        except InvalidRequirement as err:
            raise AuditInputError(f"{pyproject}: dependency {spec!r} does not parse: {err}") from None
        if req.marker is not None and not req.marker.evaluate():
            continue
        pin = by_name.get(normalize(req.name))
        if pin is None:
            problems.append(f"{req.name} is a dependency ({spec}) but the lock does not pin it")
        elif not req.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{req.name}=={pin.version} (lock line {pin.line}) does not satisfy {spec!r}")
    if problems:
        raise AuditInputError("the lock is stale (run `make lock`):\n  - " + "\n  - ".join(problems))


def read_accepted(path: Path | None) -> list[Accepted]:
    """[[accepted]] tables with id (a string or a list), package, reason and until (a date)."""
    if path is None or not path.is_file():
        return []
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise AuditInputError(f"{path}: not valid TOML: {err}") from None
    out = []
    for i, entry in enumerate(data.get("accepted", []), start=1):
        missing = [k for k in ("id", "package", "reason", "until") if not entry.get(k)]
        if missing:
            raise AuditInputError(f"{path}: accepted entry {i} lacks {', '.join(missing)}")
        until = entry["until"]
        if not isinstance(until, dt.date):
            raise AuditInputError(f"{path}: accepted entry {i} ({entry['id']}): until must be a TOML date")
        ids = entry["id"] if isinstance(entry["id"], list) else [entry["id"]]
        out.append(Accepted(tuple(map(str, ids)), normalize(str(entry["package"])), str(entry["reason"]), until))
    return out


# ---------------------------------------------------------------- sources

Fetch = Callable[[str, bytes | None], tuple[int, Any]]


def http_fetch(timeout: float, attempts: int = 3) -> Fetch:
    """GET (or POST JSON) returning (status, parsed JSON or None); 404 is an answer, not an error."""

    def fetch(url: str, body: bytes | None = None) -> tuple[int, Any]:
        headers = {"Accept": "application/json", "User-Agent": "voicetone-data-audit"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        for attempt in range(attempts):
            request = urllib.request.Request(url, data=body, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    return response.status, json.load(response)
            except urllib.error.HTTPError as err:
                if err.code in (404, 410):
                    return err.code, None
                if attempt == attempts - 1 or err.code < 500:
                    raise
            except (urllib.error.URLError, TimeoutError, ConnectionError):
                if attempt == attempts - 1:
                    raise
            time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")

    return fetch


def _pypi_findings(pin: Pin, vulns: Sequence[dict], source: str, certainty: str) -> list[Finding]:
    out = []
    for v in vulns:
        if v.get("withdrawn"):
            continue
        out.append(Finding(pin.name, pin.version, str(v.get("id")), list(v.get("aliases") or []),
                           _one_line(v.get("summary") or v.get("details") or ""),
                           [str(x) for x in v.get("fixed_in") or []], source, certainty))
    return out


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def audit_pypi(pin: Pin, fetch: Fetch, base: str) -> PackageResult:
    """Per-release JSON when the index serves it, else the project JSON (latest release only)."""
    base = base.rstrip("/")
    try:
        status, data = fetch(f"{base}/pypi/{pin.name}/{pin.version}/json", None)
        if status == 200 and data is not None:
            return PackageResult(pin.name, pin.version, VERIFIED, "pypi-release",
                                 latest=data.get("info", {}).get("version"),
                                 findings=_pypi_findings(pin, data.get("vulnerabilities") or [],
                                                         "pypi-release", "affects"),
                                 yanked=_yanked(data.get("urls") or []))
        status, data = fetch(f"{base}/pypi/{pin.name}/json", None)
    except Exception as err:  # noqa: BLE001 - any transport failure means "not checked", said per package
        return PackageResult(pin.name, pin.version, UNREACHABLE, "pypi", detail=_one_line(repr(err)))
    if status != 200 or data is None:
        return PackageResult(pin.name, pin.version, UNREACHABLE, "pypi",
                             detail=f"PyPI answered {status} for the project JSON (not on PyPI?)")
    latest = str(data.get("info", {}).get("version", ""))
    yanked = _yanked((data.get("releases") or {}).get(pin.version) or [])
    vulns = data.get("vulnerabilities") or []
    if _same_version(latest, pin.version):
        return PackageResult(pin.name, pin.version, VERIFIED, "pypi-latest", latest=latest, yanked=yanked,
                             findings=_pypi_findings(pin, vulns, "pypi-latest", "affects"))
    return PackageResult(pin.name, pin.version, PARTIAL, "pypi-latest", latest=latest, yanked=yanked,
                         detail=f"pin is behind the latest release {latest}",
                         findings=_pypi_findings(pin, vulns, "pypi-latest", "open on latest"))


def _same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def _yanked(files: Sequence[dict]) -> str | None:
    """A pinned release whose files are all yanked: worth a warning (often a broken or unsafe release)."""
    if files and all(f.get("yanked") for f in files):
        return str(files[0].get("yanked_reason") or "no reason given")
    return None


def audit_osv(pins: Sequence[Pin], fetch: Fetch, base: str) -> list[PackageResult]:
    """OSV querybatch for every pin, then one detail request per distinct advisory."""
    base = base.rstrip("/")
    hits: list[list[str]] = []
    for start in range(0, len(pins), OSV_BATCH):
        chunk = pins[start:start + OSV_BATCH]
        body = json.dumps({"queries": [{"package": {"name": p.name, "ecosystem": "PyPI"}, "version": p.version}
                                       for p in chunk]}).encode()
        status, data = fetch(f"{base}/v1/querybatch", body)
        if status != 200 or not isinstance(data, dict) or len(data.get("results", [])) != len(chunk):
            raise ConnectionError(f"OSV querybatch answered {status} with an unexpected body")
        hits += [[v["id"] for v in (r.get("vulns") or [])] for r in data["results"]]
    details: dict[str, dict] = {}
    for vid in sorted({v for ids in hits for v in ids}):
        status, data = fetch(f"{base}/v1/vulns/{vid}", None)
        details[vid] = data if status == 200 and isinstance(data, dict) else {"id": vid}
    results = []
    for pin, ids in zip(pins, hits, strict=True):
        findings = []
        for vid in ids:
            d = details[vid]
            if d.get("withdrawn"):
                continue
            findings.append(Finding(pin.name, pin.version, vid, list(d.get("aliases") or []),
                                    _one_line(d.get("summary") or d.get("details") or ""),
                                    _osv_fixed(d, pin.name), "osv", "affects"))
        results.append(PackageResult(pin.name, pin.version, VERIFIED, "osv", findings=findings))
    return results


def _osv_fixed(advisory: dict, name: str) -> list[str]:
    fixed = []
    for affected in advisory.get("affected") or []:
        if normalize(str((affected.get("package") or {}).get("name", ""))) != name:
            continue
        for rng in affected.get("ranges") or []:
            fixed += [e["fixed"] for e in rng.get("events") or [] if "fixed" in e]
    return sorted(set(fixed), key=lambda v: (Version(v) if _valid(v) else Version("0"), v))


def _valid(v: str) -> bool:
    try:
        Version(v)
        return True
    except InvalidVersion:
        return False


# ---------------------------------------------------------------- the audit


def run_audit(pins: Sequence[Pin], fetch: Fetch, *, source: str, pypi_url: str, osv_url: str,
              workers: int = 16, progress: Callable[[str], None] = lambda _m: None) -> tuple[str, list[PackageResult]]:
    """(what was used, one result per pin). `source` is auto, osv or pypi."""
    osv_note = ""
    if source in ("auto", "osv"):
        try:
            return "OSV (api querybatch)", audit_osv(pins, fetch, osv_url)
        except Exception as err:  # noqa: BLE001 - fall back, and say why
            if source == "osv":
                return f"OSV unreachable: {_one_line(repr(err))}", [
                    PackageResult(p.name, p.version, UNREACHABLE, "osv", detail="OSV unreachable") for p in pins]
            osv_note = f" (OSV unreachable: {_one_line(repr(err), 100)})"
    results: list[PackageResult] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, result in enumerate(pool.map(lambda p: audit_pypi(p, fetch, pypi_url), pins), start=1):
            results.append(result)
            if i % 50 == 0 or i == len(pins):
                progress(f"  checked {i}/{len(pins)} packages on PyPI")
    return "PyPI JSON API" + osv_note, results


def apply_accepted(results: Sequence[PackageResult], accepted: Sequence[Accepted], today: dt.date) -> list[str]:
    """Mark accepted findings; return notes on expired acceptances and on ones that matched nothing."""
    notes = []
    seen: set[tuple[str, str]] = set()
    for result in results:
        for finding in result.findings:
            for acc in accepted:
                hit = set(acc.ids) & finding.ids()
                if acc.package != finding.package or not hit:
                    continue
                seen |= {(acc.package, i) for i in acc.ids if i in hit}
                if acc.until >= today:
                    finding.accepted = acc.reason
                else:
                    notes.append(f"acceptance of {finding.id} ({acc.package}) expired on {acc.until}: review it")
    status = {r.package: r.status for r in results}
    for acc in accepted:
        unseen = [i for i in acc.ids if (acc.package, i) not in seen]
        if not unseen:
            continue
        label = f"accepted {', '.join(unseen)} ({acc.package})"
        if status.get(acc.package) == VERIFIED:
            notes.append(f"{label} matched nothing: fixed or withdrawn? remove it from the accepted file")
        elif status.get(acc.package) == PARTIAL:
            notes.append(f"{label}: not visible from this source ({acc.package} is only partly verified)")
        elif acc.package in status:
            notes.append(f"{label}: not visible ({acc.package} was not checked)")
        else:
            notes.append(f"{label}: {acc.package} is not in the lock: remove it from the accepted file")
    return notes


def exit_code(results: Sequence[PackageResult], strict: bool) -> int:
    open_findings = [f for r in results for f in r.findings if f.accepted is None]
    unreachable = [r for r in results if r.status == UNREACHABLE]
    partial = [r for r in results if r.status == PARTIAL]
    if open_findings or unreachable or (strict and partial):
        return 1
    return 0


def render(lock: Path, used: str, results: Sequence[PackageResult], notes: Sequence[str], seconds: float) -> str:
    by_status = {s: [r for r in results if r.status == s] for s in (VERIFIED, PARTIAL, UNREACHABLE)}
    lines = [f"dependency audit of {lock} ({len(results)} pinned packages, {seconds:.1f} s)",
             f"source: {used}",
             f"  {len(by_status[VERIFIED]):4d} verified (every advisory the source knows for the pinned version)",
             f"  {len(by_status[PARTIAL]):4d} partial (pin behind the latest release: only advisories still open"
             " on the latest are visible)",
             f"  {len(by_status[UNREACHABLE]):4d} not checked (source unreachable)"]
    for r in by_status[PARTIAL]:
        lines.append(f"         partial: {r.package} {r.version} (latest {r.latest})")
    for r in by_status[UNREACHABLE]:
        lines.append(f"         not checked: {r.package} {r.version}: {r.detail}")
    for r in results:
        if r.yanked:
            lines.append(f"  warning: {r.package} {r.version} is a yanked release: {r.yanked}")
    findings = [f for r in results for f in r.findings]
    if not findings:
        lines.append("findings: none")
    for f in findings:
        fixed = ", ".join(f.fixed_in) or "no fixed release"
        state = f"ACCEPTED ({f.accepted})" if f.accepted else "OPEN"
        also = f" [{', '.join(f.aliases)}]" if f.aliases else ""
        lines.append(f"  {state}: {f.package} {f.version} {f.id}{also} ({f.certainty}; fixed in {fixed}): {f.summary}")
    lines += [f"  note: {n}" for n in notes]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lock", type=Path, default=REPO / "requirements" / "lock.txt")
    parser.add_argument("--pyproject", default=str(REPO / "pyproject.toml"),
                        help="check that the lock pins every dependency of this project ('' to skip)")
    parser.add_argument("--accepted", type=Path, default=REPO / "requirements" / "audit-accepted.toml")
    parser.add_argument("--source", choices=("auto", "osv", "pypi"), default="auto",
                        help="auto: OSV when reachable, else PyPI's JSON API")
    parser.add_argument("--pypi-url", default="https://pypi.org")
    parser.add_argument("--osv-url", default="https://api.osv.dev")
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--attempts", type=int, default=3, help="tries per request (5xx and network errors)")
    parser.add_argument("--strict", action="store_true", help="fail unless every package is fully verified")
    parser.add_argument("--json", type=Path, help="also write the whole result as JSON here")
    args = parser.parse_args(argv)

    started = time.monotonic()
    try:
        pins = read_lock(args.lock)
        if args.pyproject:
            check_lock_covers(Path(args.pyproject), pins)
        accepted = read_accepted(args.accepted)
    except (AuditInputError, OSError, tomllib.TOMLDecodeError) as err:
        print(f"audit: {err}", file=sys.stderr)
        return 2
    used, results = run_audit(pins, http_fetch(args.timeout, max(1, args.attempts)), source=args.source, pypi_url=args.pypi_url,
                              osv_url=args.osv_url, workers=args.workers,
                              progress=lambda m: print(m, file=sys.stderr, flush=True))
    notes = apply_accepted(results, accepted, dt.date.today())
    print(render(args.lock, used, results, notes, time.monotonic() - started))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"source": used, "results": [asdict(r) for r in results], "notes": notes},
                                        indent=2))
    return exit_code(results, args.strict)


if __name__ == "__main__":
    sys.exit(main())
