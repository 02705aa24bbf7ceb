//! Lab 3: pod-to-pod mTLS.

use crate::catalog::CheckDef;

pub fn checks() -> Vec<CheckDef> {
    Vec::new()
}
