"""The dataset spec: one YAML file that says what to build, validated before any work starts.

Only `name`, `output`, `sources` and `labelers` are required; everything else has a documented
default (docs/spec.md). Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from manifests.schema import SENTIMENTS
from tasks.spec_labelers import LabelersSpec
from tasks.spec_labelers import Strict as _Strict
from tasks.spec_plan import (  # the planning settings; importable from here too, as parts of DatasetSpec
    BalanceSpec,
    EligibilitySpec,
    PiiSpec,
    PlausibilitySpec,
    SplitSpec,
    StageDurationLimits,  # noqa: F401  (tasks/plan/plausibility.py imports it from here)
    WeightSpec,
)

# The one list of adapter kinds; tasks/ingest/corpora/registry.py maps each to its function.
ADAPTER_KINDS: tuple[str, ...] = (
    "librispeech",
    "commonvoice",
    "ravdess",
    "cremad",
    "meld",
    "iemocap",
    "slue_voxceleb",
    "msp_podcast",
    "folder",
    "hf_dataset",
)


class SourceSpec(_Strict):
    """One input corpus."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="unique, used in utterance ids")
    kind: str = Field(description="adapter: " + " | ".join(ADAPTER_KINDS))
    path: str = Field(description="local folder or s3://bucket/prefix")
    language: str | None = Field(default=None, description="default language when the corpus has none")
    license: str | None = Field(default=None, description="overrides the adapter's licence")
    emotion_map: dict[str, str | None] = Field(
        default_factory=dict,
        description="native emotion label -> negative|neutral|positive (null drops it as unmapped_label)",
    )
    options: dict[str, Any] = Field(default_factory=dict, description="adapter-specific options")
    split: Literal["train", "dev", "test"] | None = Field(
        default=None, description="put the whole source into this split (overrides official and hashed splits)"
    )
    split_policy: Literal["speaker", "utterance_stratified"] = Field(
        default="speaker",
        description="speaker: speaker-disjoint hashed splits; utterance_stratified: per (speaker, emotion) "
        "utterance-level split for acted corpora with too few speakers (speakers then share splits)",
    )

    @model_validator(mode="after")
    def _one_split_rule(self) -> SourceSpec:
        if self.split is not None and self.split_policy != "speaker":
            raise ValueError(f"source {self.name!r}: set either split ({self.split!r}) or split_policy "
                             f"({self.split_policy!r}), not both")
        return self
    metadata: str | None = Field(
        default=None, description="folder: the metadata table (.csv/.tsv/.jsonl) anywhere; file names relative to path"
    )

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in ADAPTER_KINDS:
            raise ValueError(f"unknown adapter kind {value!r}; allowed: {', '.join(ADAPTER_KINDS)}")
        return value

    @field_validator("emotion_map")
    @classmethod
    def _valid_targets(cls, value: dict[str, str | None]) -> dict[str, str | None]:
        for label, target in value.items():
            if target is not None and target not in SENTIMENTS:
                raise ValueError(
                    f"emotion_map[{label!r}] = {target!r}; allowed: {', '.join(SENTIMENTS)} or null"
                )
        return value


class SegmentSpec(_Strict):
    window_s: float = Field(default=5.0, gt=0)
    hop_s: float = Field(default=2.5, gt=0)
    min_last_window_s: float = Field(
        default=1.0, ge=0, description="a trailing remainder shorter than this is dropped (see docs)"
    )
    speech_threshold: float = Field(default=0.5, ge=0, le=1, description="Silero VAD probability")
    min_speech_ratio: float = Field(
        default=0.1, ge=0, le=1, description="a window is speech_present when this share has speech"
    )
    non_speech_windows_per_noise_file: int = Field(default=2, ge=0)
    second_opinion: bool = Field(
        default=True, description="items where VAD hears little speech get an energy + pitch second opinion"
    )


class AugmentSpec(_Strict):
    enabled: bool = True
    speeds: list[float] = Field(default_factory=lambda: [0.95, 1.0, 1.05])
    p_reverb: float = Field(default=0.5, ge=0, le=1)
    p_noise: float = Field(default=0.7, ge=0, le=1)
    snr_db: tuple[float, float] = (0.0, 15.0)
    noise_paths: list[str] = Field(default_factory=list, description="folders of noise audio (MUSAN-like)")
    rir_paths: list[str] = Field(default_factory=list, description="folders of RIR WAVs (RIRS_NOISES-like)")
    simulate_rirs: int = Field(default=8, ge=0, description="RIRs simulated when no rir_paths are given")
    default_noise: Literal["auto", "off"] = Field(
        default="auto",
        description="auto: with no noise_paths, generate a noise pool (white/pink/brown, hum/tones, babble of other "
        "training speakers); off: no noise pool without noise_paths (warned)",
    )
    splits: list[Literal["train", "dev", "test"]] = Field(default_factory=lambda: ["train"])
    materialize: bool = Field(default=True, description="write augmented FLAC (recipe_applied = true)")
    copies_per_utterance: int = Field(
        default=1, ge=1, le=10,
        description="classifier-stage variants per augmented (train) utterance, Kaldi-style; speeds rotate over copies",
    )

    @field_validator("speeds")
    @classmethod
    def _positive_speeds(cls, value: list[float]) -> list[float]:
        if not value or any(s <= 0 for s in value):
            raise ValueError("speeds must be a non-empty list of positive factors")
        return value

    @field_validator("snr_db")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] > value[1]:
            raise ValueError(f"snr_db range must be [low, high] (got {list(value)})")
        return value


class AwsSpec(_Strict):
    region: str = "us-east-1"
    staging_uri: str | None = None


class ReportSpec(_Strict):
    """The HTML report written into each release (docs/report.md)."""

    html: bool = Field(default=True, description="write report.html (plots, tables, audio samples) at publish")
    samples_per_group: int = Field(default=2, ge=0, le=20,
                                   description="samples per (source, class, label origin) in the report")


class RunSpec(_Strict):
    shard_size: int = Field(default=500, ge=1, description="utterances per Prefect task")
    task_runner: Literal["threads", "dask"] = Field(
        default="threads", description="threads (default), or dask: a local cluster or dask_address"
    )
    max_workers: int = Field(default=2, ge=1, description="threads, or Dask worker processes of a local cluster; "
                             "with dask_address, the workers to keep busy (8 task runs in flight per worker)")
    dask_address: str | None = Field(default=None, description="tcp://host:port of an existing Dask scheduler")
    max_task_runs_per_stage: int = Field(
        default=2000, ge=1, description="at most this many Prefect task runs per per-shard stage; with more "
        "shards, consecutive shards are grouped and one task runs a group's shards in order")
    part_rows: int = Field(
        default=50_000, ge=1, description="planned utterances per plan shard and per manifest part: planning "
        "and publish group max(1, part_rows // mean rows of a labelling shard) consecutive labelling shards "
        "into one plan shard (part j of each manifest); changes the part layout, hence content_sha256, never the rows")
    finish_in_child_from_rows: int | None = Field(
        default=200_000, ge=0, description="publish's finishing step (card, plots, validation, LATEST) runs in a "
        "child process of its own when the release has at least this many utterances, so the memory it takes is "
        "returned when it ends (docs/scaling.md); 0: always; null: never. Never changes the release")
    keep_releases: int = Field(default=5, ge=1)
    lock_wait_s: float = Field(default=1800, ge=0, description="how long a build waits for another build "
                               "of the same output to finish (tasks/core/output_lock.py); 0: stop at once")
    lock_stale_s: float = Field(default=300, gt=0, description="a lock without heartbeat for this long "
                                "(or whose pid is gone on this host) is stale and taken over")
    max_reject_share: float = Field(
        default=0.5, ge=0, le=1, description="a source rejecting more of its found items fails the build"
    )
    allow_failed_sources: list[str] = Field(
        default_factory=list, description="sources that may accept nothing or reject too much (a warning instead)"
    )


class DatasetSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    seed: int = 13
    output: str
    sources: list[SourceSpec] = Field(min_length=1)
    labelers: LabelersSpec = Field(default_factory=LabelersSpec)
    splits: SplitSpec = Field(default_factory=SplitSpec)
    balance: BalanceSpec = Field(default_factory=BalanceSpec)
    weights: WeightSpec = Field(default_factory=WeightSpec)
    eligibility: EligibilitySpec = Field(default_factory=EligibilitySpec)
    segments: SegmentSpec = Field(default_factory=SegmentSpec)
    augment: AugmentSpec = Field(default_factory=AugmentSpec)
    aws: AwsSpec = Field(default_factory=AwsSpec)
    pii: PiiSpec = Field(default_factory=PiiSpec)
    plausibility: PlausibilitySpec = Field(default_factory=PlausibilitySpec)
    run: RunSpec = Field(default_factory=RunSpec)
    report: ReportSpec = Field(default_factory=ReportSpec)
    language: str | None = Field(
        default=None, description="language of sources that do not say; null = detect it from the audio"
    )

    @model_validator(mode="after")
    def _unique_source_names(self) -> DatasetSpec:
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique; repeated: {', '.join(dupes)}")
        return self


class SpecError(ValueError):
    """A spec that cannot work; the message names the field and what is allowed."""


def _format_validation_error(err: ValidationError, origin: str) -> str:
    lines = [f"invalid dataset spec {origin}:"]
    for item in err.errors():
        loc = ".".join(str(p) for p in item["loc"]) or "(top level)"
        msg = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see docs/spec.md)"
        elif item["type"] == "literal_error":
            msg = f"{msg} (got {item.get('input')!r})"
        lines.append(f"  - {loc}: {msg}")
    return "\n".join(lines)


def parse_spec(data: dict[str, Any], origin: str = "<dict>", base_dir: Path | None = None) -> DatasetSpec:
    """Validate a spec mapping; relative local paths are resolved against `base_dir`."""
    if not isinstance(data, dict):
        raise SpecError(f"invalid dataset spec {origin}: expected a mapping at the top level")
    try:
        spec = DatasetSpec.model_validate(data)
    except ValidationError as err:
        raise SpecError(_format_validation_error(err, origin)) from None
    if base_dir is not None:
        spec = resolve_paths(spec, base_dir)
    return spec


def _resolve(path: str, base_dir: Path) -> str:
    if "://" in path:
        return path
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (base_dir / p).resolve())


def resolve_paths(spec: DatasetSpec, base_dir: Path) -> DatasetSpec:
    """Make every local path in the spec absolute relative to the spec file's folder."""
    spec = spec.model_copy(deep=True)
    spec.output = _resolve(spec.output, base_dir)
    for source in spec.sources:
        source.path = _resolve(source.path, base_dir)
        if source.metadata:
            source.metadata = _resolve(source.metadata, base_dir)
    spec.augment.noise_paths = [_resolve(p, base_dir) for p in spec.augment.noise_paths]
    spec.augment.rir_paths = [_resolve(p, base_dir) for p in spec.augment.rir_paths]
    if spec.labelers.text_classifier.model_path:
        spec.labelers.text_classifier.model_path = _resolve(spec.labelers.text_classifier.model_path, base_dir)
    return spec


def load_spec(path: str | Path, output: str | None = None) -> DatasetSpec:
    """Read, validate and resolve a YAML spec file (local, or `s3://` for deployments whose workers have
    no copy of the repository); `output` overrides the spec's output."""
    remote = isinstance(path, str) and path.startswith("s3://")
    if remote:
        from manifests import uri as fs
        try:
            text = fs.read_bytes(path).decode("utf-8")
        except Exception as err:  # noqa: BLE001 - botocore's errors, named in the message
            raise SpecError(f"cannot read dataset spec {path}: {err}") from None
    else:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise SpecError(f"cannot read dataset spec {path}: {getattr(err, 'strerror', None) or err}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise SpecError(f"invalid YAML in dataset spec {path}: {err}") from None
    if isinstance(data, dict) and output is not None:
        data = {**data, "output": output}
    if not remote:
        return parse_spec(data, origin=str(path), base_dir=Path(path).parent.resolve())
    spec = parse_spec(data, origin=str(path))
    relative = [p for p in _spec_paths(spec) if "://" not in p and not Path(p).expanduser().is_absolute()]
    if relative:
        raise SpecError(f"dataset spec {path} is on S3, so its paths cannot be relative to it: "
                        f"{', '.join(relative)} (use s3:// URIs or absolute paths)")
    return spec


def _spec_paths(spec: DatasetSpec) -> list[str]:
    """Every path-valued field, in the order resolve_paths treats them."""
    paths = [spec.output, *(s.path for s in spec.sources), *spec.augment.noise_paths, *spec.augment.rir_paths]
    paths += [s.metadata for s in spec.sources if s.metadata]
    if spec.labelers.text_classifier.model_path:
        paths.append(spec.labelers.text_classifier.model_path)
    return paths
