//! The checks, one module per hardening area. Each module exposes `checks()`; the catalog is
//! their concatenation in lab order.

pub mod access;
pub mod etcd;
pub mod mtls;
pub mod netpol;
pub mod podsec;
pub mod proxy;

use crate::catalog::CheckDef;

pub fn all() -> Vec<CheckDef> {
    let mut checks = Vec::new();
    checks.extend(etcd::checks());
    checks.extend(netpol::checks());
    checks.extend(mtls::checks());
    checks.extend(access::checks());
    checks.extend(podsec::checks());
    checks.extend(proxy::checks());
    checks
}
