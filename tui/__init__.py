"""The Textual terminal UI, a client of the engine process (terminal-UI issue); never imports torch."""
