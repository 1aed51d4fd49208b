//! Error reporting: every failure the mock returns to a caller is explained once, through the
//! `log` facade and on stderr with an `nrt-mock:` prefix (a C host rarely installs a Rust
//! logger, and a silent `NRT_INVALID` is hard to debug). Nothing else goes to stderr.

use neuron_sys::bindings::NRT_STATUS;

/// A failed call: the status to return; the explanation was already reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fail(pub(crate) NRT_STATUS);

/// What every fallible internal function returns.
pub(crate) type Res<T = ()> = Result<T, Fail>;

/// Reports `msg` and returns the failure carrying `status`.
pub(crate) fn fail(status: NRT_STATUS, msg: impl AsRef<str>) -> Fail {
    let msg = msg.as_ref();
    log::error!("{msg}");
    eprintln!("nrt-mock: {msg}");
    Fail(status)
}

/// A failure that carries a status but whose explanation is reported elsewhere or not needed.
pub(crate) fn quiet(status: NRT_STATUS) -> Fail {
    Fail(status)
}
