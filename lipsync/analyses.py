"""Analyses of recordings kept for the session (pure: no bpy).

An animator often records a scene's dialogue in one take, lays it in the Sequencer and cuts it
into lines (its sound strip split, each part made a line, for one sprite or several). Each line
is the take's analysis as that part hears it, so the take is analysed once, not once a line: a
line lip-synced from the same recording, by the same analyser with the same settings, reuses
the analysis.
"""

from collections import OrderedDict

from ..atomic_files import sha256_file


class AnalysisMemo:
    """The last `size` analyses, each by what decides it: the recording's bytes (a file changed
    since is analysed anew; a packed sound written out again is the same), the analyser and its
    settings (the recognizer, the dialog text)."""

    def __init__(self, size=16):
        self.size = size
        self._kept = OrderedDict()

    @staticmethod
    def key(recording, *settings):
        """The key of an analysis of `recording` (a path) with `settings` (hashable values)."""
        return (sha256_file(recording), *settings)

    def get(self, key):
        """What was kept under `key`, or None."""
        if key not in self._kept:
            return None
        self._kept.move_to_end(key)
        return self._kept[key]

    def put(self, key, analysis):
        self._kept[key] = analysis
        self._kept.move_to_end(key)
        while len(self._kept) > self.size:
            self._kept.popitem(last=False)

    def clear(self):
        self._kept.clear()
