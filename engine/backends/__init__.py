"""Image generators behind one interface (diffusers, tiny, preview): filled by the render-engine issue."""
