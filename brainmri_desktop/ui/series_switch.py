"""Several series at once: the series of a load become the sessions of one Study, listed in the study browser, and
choosing one shows it in the window where the reader left it (slice, zoom, orientation, window), with its own
results, decisions and marks. Triage runs for the series shown first, then for the others one after another in the
background (see TriageController.run), so switching finds them done; each series' scope badge follows its run."""

from __future__ import annotations

from PySide6.QtCore import QSignalBlocker

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
        """Opens every (uid, slices, review store) as a session of a new Study, decided as the last one was; shows
        the browser's first series."""
        w = self.w
        w.tools.memory.forget()
        w.study = Study(w.study.policy.copy())
        for uid, slices, reviews in series:
            session = w.study.add(uid, Session(slices, reviews if reviews is not None else ReviewStore(slices)))
            w.watch(session)
            if session.reviews.load_error:
                w.show_failure(session.reviews.load_error)
        w.browser.set_slices([s for session in w.study.sessions.values() for s in session.slices])
        self._present(w.browser.series_uids()[0])

    def show(self, uid: str) -> None:
        w = self.w
        if uid in w.study.sessions and uid != w.study.active:
            w.tools.leave_series(w.study.active)
            self._present(uid)

    def _present(self, uid: str) -> None:
        w = self.w
        session = w.study.activate(uid)
        w.browser.select_series(uid, notify=False)
        w.slice_list.model.set_session(session)
        w.slice_list.show_session(session, set())  # the summary
        w.strip.show_session(session)
        w.update_title()
        # The series' own window is shown with its slice, once: the bar's change would draw the slice before that.
        with QSignalBlocker(w.tools.window_bar):
            index = w.tools.enter_series(uid, session.slices[0])
        w.select_slice(index)
        w.tools.restore_series(uid)
        # The line said how the last run went, maybe another series': it now says where this one stands.
        w.status.setText(f"{series_name(session)}: {len(session.results)} of {len(session.slices)} slices triaged")
        entry = w.bar.entry
        if entry is not None and Study.needs_triage(session, entry.manifest, w.triage.running):
            w.run_inference()

    def _started(self, session: Session, model: str) -> None:
        where = "" if session is self.w.session else f" on {series_name(session)} in the background"
        self.w.status_area.start(f"Running {model}{where}...")

    def _show_scope(self, session: Session) -> None:
        if (verdict := series_verdict(session.verdicts.values())) and (uid := self.w.study.key_of(session)):
            self.w.browser.set_scope({uid: verdict})
