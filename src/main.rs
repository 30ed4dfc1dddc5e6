//! voxq command line: argument types, calls into the libraries, exit codes.
fn main() {}
