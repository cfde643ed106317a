"""Audio: a track (or a live input) turned into per-frame variables for schedules and prompts.

Each filter {name, f_center, f_width, order} of the preset's ``[audio]`` section is a
Butterworth bandpass (``iir``: second-order sections, designed and run as scipy.signal does);
its envelope is the RMS of the filtered signal over each frame's time window. Built in:
``amp`` (full band), ``onset``, ``beat`` and ``bpm``. ``load`` reads files, ``envelopes``
computes them offline, ``stream`` block by block, ``live`` from a microphone or a file played
in real time.
"""
