//! Layer groups: named sets of nodes from name scopes at a depth, a spec file, or a preset.
