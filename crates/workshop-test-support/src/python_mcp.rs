//! The official Python MCP SDK (`mcp`, pinned), installed by `.ci/install-python-mcp.sh` into
//! `<workspace>/.tools/pyvenv`: an MCP client nobody here wrote, for the e2e tests.

use std::path::PathBuf;

use crate::claude::workspace_root;

/// `$WORKSHOP_TEST_PYTHON`, else `<workspace>/.tools/pyvenv/bin/python`; panics with how to
/// install it when neither exists.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("WORKSHOP_TEST_PYTHON") {
        if !p.is_empty() {
            let p = PathBuf::from(p);
            assert!(
                p.exists(),
                "WORKSHOP_TEST_PYTHON={} does not exist",
                p.display()
            );
            return p;
        }
    }
    let p = workspace_root().join(".tools/pyvenv/bin/python");
    assert!(
        p.exists(),
        "the Python MCP SDK is not installed at {}: run scripts/test.sh (it runs .ci/install-python-mcp.sh), or set WORKSHOP_TEST_PYTHON to a python with mcp==2.3.0",
        p.display()
    );
    p
}

/// A script of the e2e suite, `tests/e2e/mcp/<name>`.
pub fn script(name: &str) -> PathBuf {
    workspace_root().join("tests/e2e/mcp").join(name)
}
