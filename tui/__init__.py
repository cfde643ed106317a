"""The Textual terminal UI, a client of the engine process; never imports torch."""
