//! Placeholder until the end-to-end suites land.
#[test]
fn workspace_builds() {}
