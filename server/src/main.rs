//! The `fhir-notary` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

/// mimalloc rather than glibc's allocator: request workers build each AuditEvent and the
/// trail frees it on another thread, a pattern glibc serves with arena locks and chunk
/// consolidation (a tenth of the workers' CPU in a profile of audited reads). With the
/// crate's `override` feature it also serves `malloc` itself, so the bundled SQLite's many
/// small allocations on the write connection (a sixth of that thread) take it too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    server::cli::main()
}
