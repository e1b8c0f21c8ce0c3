//! `TlsOptions` in a build without the `tls` feature: the type exists so code that names it
//! (`connect_to_url(url, None)`, `set_tls_options(None)`) compiles, but no value of it can be
//! made: every constructor fails with [`Error::TlsDisabled`], and so does `wss://`.

use std::convert::Infallible;
use std::io;

use crate::error::Error;

/// What the error says: the feature to enable.
const NO_TLS: &str = "TLS (wss://) is not in this build of wspeer: enable its `tls-ring` \
                      feature (on by default) or `tls-aws-lc-rs`";

/// TLS settings for `wss://`, Godot's `TLSOptions`.
///
/// **This build has no TLS** (wspeer without its `tls-ring`, `tls-aws-lc-rs` or `tls`
/// feature): no value of this type exists, every constructor fails with
/// [`Error::TlsDisabled`], and so does connecting to a `wss://` URL.
#[derive(Clone, Debug)]
pub struct TlsOptions {
    never: Infallible,
}

impl TlsOptions {
    /// Fails: this build has no TLS ([`Error::TlsDisabled`]).
    pub fn client() -> Result<Self, Error> {
        Err(Error::TlsDisabled(NO_TLS))
    }

    /// Fails: this build has no TLS ([`Error::TlsDisabled`]).
    pub fn client_with_ca(_ca_pem: &[u8]) -> Result<Self, Error> {
        Err(Error::TlsDisabled(NO_TLS))
    }

    /// Fails: this build has no TLS ([`Error::TlsDisabled`]).
    pub fn client_unsafe() -> Result<Self, Error> {
        Err(Error::TlsDisabled(NO_TLS))
    }

    /// Fails: this build has no TLS ([`Error::TlsDisabled`]).
    pub fn server(_cert_chain_pem: &[u8], _key_pem: &[u8]) -> Result<Self, Error> {
        Err(Error::TlsDisabled(NO_TLS))
    }

    /// Cannot be called: no `TlsOptions` exists in this build.
    pub fn with_common_name_override(self, _name: &str) -> Result<Self, Error> {
        match self.never {}
    }

    /// Cannot be called: no `TlsOptions` exists in this build.
    pub fn is_server(&self) -> bool {
        match self.never {}
    }

    /// Cannot be called: no `TlsOptions` exists in this build.
    pub fn is_unsafe_client(&self) -> bool {
        match self.never {}
    }

    /// Cannot be called: no `TlsOptions` exists in this build.
    pub fn get_common_name_override(&self) -> Option<&str> {
        match self.never {}
    }

    pub(crate) fn start_client(&self, _host: &str) -> Result<Session, Error> {
        match self.never {}
    }

    pub(crate) fn start_server(&self) -> Result<Session, Error> {
        match self.never {}
    }

    pub(crate) fn check_client(&self) -> Result<(), Error> {
        match self.never {}
    }

    pub(crate) fn check_server(&self) -> Result<(), Error> {
        match self.never {}
    }
}

/// The TLS session type of a build without TLS: none exists. It has the few methods of
/// `rustls::Connection` the stream layer calls, so that layer needs no `cfg`.
pub(crate) enum Session {}

impl Session {
    pub(crate) fn reader(&mut self) -> io::Empty {
        match *self {}
    }

    pub(crate) fn writer(&mut self) -> io::Sink {
        match *self {}
    }

    pub(crate) fn read_tls(&mut self, _from: &mut dyn io::Read) -> io::Result<usize> {
        match *self {}
    }

    pub(crate) fn write_tls(&mut self, _to: &mut dyn io::Write) -> io::Result<usize> {
        match *self {}
    }

    pub(crate) fn process_new_packets(&mut self) -> io::Result<()> {
        match *self {}
    }

    pub(crate) fn wants_write(&self) -> bool {
        match *self {}
    }

    pub(crate) fn send_close_notify(&mut self) {
        match *self {}
    }
}

/// Whether the session's handshake resumed an earlier one (no session exists here).
pub(crate) fn resumed(session: &Session) -> bool {
    match *session {}
}
