"""Audio: Butterworth bandpass envelopes, beats and onsets as schedule variables (audio issue)."""
