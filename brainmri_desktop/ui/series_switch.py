"""Several series at once: the series of a load become the sessions of one Study, listed in the study browser, and
choosing one shows it in the window where the reader left it (slice, zoom, orientation, window), with its own
results, decisions and marks. Triage runs for the series shown first, then for the others one after another in the
background (see TriageController.run), so switching finds them done; each series' scope badge follows its run."""

from __future__ import annotations

from ..core.review import ReviewStore
from ..core.scope import series_verdict
from ..core.session import Session, Study
from .study_browser import series_label, series_of


def series_name(session: Session) -> str:
    return series_label(series_of(session.slices[0]))


class SeriesSwitch:
    def __init__(self, window):
        self.w = window
        window.browser.seriesSelected.connect(self.show)
        window.triage.started.connect(self._started)
        window.triage.runFinished.connect(lambda _complete: self._show_scope(window.triage.session))

    def open(self, series: list[tuple[str, list, ReviewStore | None]]) -> None:
        """Opens every (uid, slices, review store) as a session of a new Study; shows the browser's first series."""
        w = self.w
        w.tools.memory.forget()
        w.study, w.session = Study(), None
        for uid, slices, reviews in series:
            session = w.study.add(uid, Session(slices, reviews if reviews is not None else ReviewStore(slices)))
            session.include_out_of_scope = w.include_out_of_scope
            if session.reviews.load_error:
                w._failed(session.reviews.load_error)
        w.browser.set_slices([s for session in w.study.sessions.values() for s in session.slices])
        self.show(w.browser.series_uids()[0])

    def show(self, uid: str) -> None:
        w = self.w
        if uid not in w.study.sessions or (w.session is not None and uid == w.study.active):
            return
        if w.session is not None:
            w.tools.leave_series(w.study.active)
        w.session = w.study.activate(uid)
        w.session.threshold = w.bar.threshold
        w.browser.select_series(uid, notify=False)
        w.slice_list.model.set_session(w.session)
        w.strip.show_session(w.session)
        w._update_title()
        w.select_slice(w.tools.enter_series(uid, w.session.slices[0]))
        w.tools.restore_series(uid)
        # The line said how the last run went, maybe another series': it now says where this one stands.
        w.status.setText(f"{series_name(w.session)}: {len(w.session.results)} of {len(w.session.slices)} slices triaged")
        entry = w.bar.entry
        if entry is not None and Study.needs_triage(w.session, entry.manifest, w.triage.running):
            w.run_inference()
        else:
            w._refresh_rows(set())  # the summary; the table and the strip show the series already

    def _started(self, session: Session, model: str) -> None:
        where = "" if session is self.w.session else f" on {series_name(session)} in the background"
        self.w.status_area.start(f"Running {model}{where}...")

    def _show_scope(self, session: Session) -> None:
        if (verdict := series_verdict(session.verdicts.values())) and (uid := self.w.study.key_of(session)):
            self.w.browser.set_scope({uid: verdict})
