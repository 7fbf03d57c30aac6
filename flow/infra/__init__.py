"""Infrastructure the steps share: build folders, processes, progress and console, errors, boards, model files."""
