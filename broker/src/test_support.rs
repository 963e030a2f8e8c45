//! Helpers for the crate's unit tests.

/// Runs `f` to completion on a fresh glommio executor (its own thread); a panic inside fails
/// the calling test.
pub fn run<F: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
    glommio::LocalExecutorBuilder::default().spawn(f).unwrap().join().unwrap();
}
