"""Retrieving a study (WADO-RS) into the cache, with progress and cancel: the local paths that `load_paths` reads."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import CancelledError
from ..core.io.study import Cancel, Progress
from .cache import StudyCache
from .client import Server
from .query import SeriesSummary, list_series, valid_uid

# Series that hold nothing to triage: reports (ours included, from an earlier run), key objects, presentation states,
# documents, and secondary captures ("OT": derived pictures such as our burnt-in overlays, not acquisitions). A series
# named by UID is retrieved whatever its modality.
NON_IMAGE_MODALITIES = frozenset({"SR", "KO", "PR", "DOC", "OT"})


@dataclass
class Retrieved:
    study_uid: str
    series: list[SeriesSummary]
    paths: list[Path] = field(default_factory=list)
    from_cache: int = 0  # series found whole in the cache


def retrieve_study(client: Server, cache: StudyCache, study_uid: str, series_uids: Sequence[str] | None = None,
                   progress: Progress | None = None, cancel: Cancel | None = None,
                   skip_modalities: frozenset[str] = NON_IMAGE_MODALITIES) -> Retrieved:
    """Every image series of the study (or those named) in the cache; progress counts instances. A series already
    cached with the server's instance count is not fetched again. Raises PacsError or CancelledError; a series
    interrupted halfway leaves nothing in the cache."""
    if not valid_uid(study_uid):
        raise client.error(f"not a Study Instance UID: {study_uid[:70]!r}")
    listed = list_series(client, study_uid)
    if not listed:
        raise client.error(f"holds no study {study_uid}")
    wanted = [s for s in listed if (s.uid in series_uids if series_uids else s.modality.upper() not in skip_modalities)]
    if series_uids and len(wanted) < len(set(series_uids)):
        raise client.error("the study holds no series with some of the UIDs asked for")
    if not wanted:
        raise client.error("the study holds no image series" if not series_uids else "no such series")
    total = sum(s.instance_count or 0 for s in wanted)
    done = 0
    result = Retrieved(study_uid, wanted)

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, max(total, done))

    for series in wanted:
        if cancel is not None and cancel():
            raise CancelledError()
        cached = cache.cached_series(study_uid, series.uid)
        if cached and (series.instance_count is None or len(cached) == series.instance_count):
            result.paths.extend(cached)
            result.from_cache += 1
            done += len(cached)
            if progress is not None:
                progress(done, max(total, done))
            continue
        with closing(client.iter_series(study_uid, series.uid)) as instances:
            result.paths.extend(cache.store_series(study_uid, series.uid, instances, step, cancel))
    cache.touch(study_uid)
    cache.evict(keep=study_uid)
    return result
