//! The close handshake (RFC 6455 §7.1) as one state with named transitions, so that a
//! half-closed connection can only be in a state that has a name.

use std::time::{Duration, Instant};

/// How far the close handshake has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseState {
    /// No close frame sent or received yet.
    NotStarted,
    /// We sent a close frame and wait for the remote's answer until `deadline`.
    AwaitingReply { deadline: Instant },
    /// The WebSocket part is over (close frames exchanged, or we failed the connection
    /// because of the remote's error). Our last bytes go out, then our side of the stream
    /// ends (`write_shut`). While `wait_for_eof`, input is still read and thrown away until
    /// the remote ends its side too: closing a socket with unread input makes the kernel
    /// send a reset, which can destroy our close frame in flight. Bounded by `deadline`.
    Draining {
        deadline: Instant,
        wait_for_eof: bool,
        write_shut: bool,
    },
    /// Over.
    Closed,
}

/// What can happen to a connection's close handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseInput {
    /// The application asked to close with a code.
    LocalClose,
    /// A close frame arrived from the remote.
    RemoteClose,
    /// We fail the connection because of the remote's misbehaviour (a protocol error, or a
    /// refused upgrade): our close frame (or HTTP error) goes out, then we wait for its end.
    LocalFailure,
    /// Everything queued was sent and our side of the stream ended.
    WriteShut,
    /// The remote ended its side of the stream (or the stream broke).
    RemoteEof,
    /// The state's deadline passed.
    Timeout,
    /// Drop the connection now, without a close frame.
    Abort,
}

/// What the connection must do after a transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseEffect {
    /// Nothing more.
    Nothing,
    /// Queue our close frame.
    SendClose,
    /// The remote started the close: report its request (tungstenite queues the echo).
    ReportRequest,
    /// The connection is over as recorded (close codes exchanged, or the failure we
    /// already noted).
    Finished,
    /// The connection is over without a clean close (close code -1).
    Failed,
}

impl CloseState {
    /// The transition for `input` at `now`; `timeout` is the configured close timeout.
    pub(crate) fn on(
        self,
        input: CloseInput,
        now: Instant,
        timeout: Duration,
    ) -> (CloseState, CloseEffect) {
        use CloseEffect::*;
        use CloseInput::*;
        use CloseState::*;
        let draining = |wait_for_eof| Draining {
            deadline: now + timeout,
            wait_for_eof,
            write_shut: false,
        };
        match (self, input) {
            (Closed, _) => (Closed, Nothing),
            (_, Abort) => (Closed, Failed),

            (NotStarted, LocalClose) => (
                AwaitingReply {
                    deadline: now + timeout,
                },
                SendClose,
            ),
            (NotStarted, RemoteClose) => (draining(false), ReportRequest),
            (NotStarted, LocalFailure) => (draining(true), SendClose),
            (NotStarted, RemoteEof) => (Closed, Failed),
            (NotStarted, WriteShut | Timeout) => (self, Nothing),

            (AwaitingReply { .. }, LocalClose) => (self, Nothing),
            // The reply completes the handshake: the time left for it still bounds the end.
            (AwaitingReply { deadline }, RemoteClose) => (
                Draining {
                    deadline,
                    wait_for_eof: false,
                    write_shut: false,
                },
                Nothing,
            ),
            // Our close frame is already out: no second one.
            (AwaitingReply { .. }, LocalFailure) => (draining(true), Nothing),
            (AwaitingReply { .. }, RemoteEof | Timeout) => (Closed, Failed),
            (AwaitingReply { .. }, WriteShut) => (self, Nothing),

            (Draining { .. }, LocalClose | RemoteClose | LocalFailure) => (self, Nothing),
            (
                Draining {
                    write_shut: true, ..
                },
                RemoteEof,
            ) => (Closed, Finished),
            (Draining { deadline, .. }, RemoteEof) => (
                Draining {
                    deadline,
                    wait_for_eof: false,
                    write_shut: false,
                },
                Nothing,
            ),
            (
                Draining {
                    wait_for_eof: false,
                    ..
                },
                WriteShut,
            ) => (Closed, Finished),
            (Draining { deadline, .. }, WriteShut) => (
                Draining {
                    deadline,
                    wait_for_eof: true,
                    write_shut: true,
                },
                Nothing,
            ),
            // The frames were exchanged (or the failure noted); only the teardown was slow.
            (Draining { .. }, Timeout) => (Closed, Finished),
        }
    }

    /// When this state next needs a timeout call.
    pub(crate) fn deadline(self) -> Option<Instant> {
        match self {
            CloseState::AwaitingReply { deadline } | CloseState::Draining { deadline, .. } => {
                Some(deadline)
            }
            CloseState::NotStarted | CloseState::Closed => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CloseEffect::*;
    use super::CloseInput::*;
    use super::CloseState::*;
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    /// Every state against every input: the whole table, so that a changed transition
    /// shows up as one changed row.
    #[test]
    fn transition_table() {
        let t0 = crate::test_epoch();
        let now = t0 + Duration::from_secs(1);
        let later = now + TIMEOUT;
        let awaiting = AwaitingReply { deadline: t0 };
        let drain = |wait_for_eof, write_shut| Draining {
            deadline: t0,
            wait_for_eof,
            write_shut,
        };
        let fresh_drain = |wait_for_eof| Draining {
            deadline: later,
            wait_for_eof,
            write_shut: false,
        };
        #[rustfmt::skip]
        let table: Vec<(CloseState, CloseInput, CloseState, CloseEffect)> = vec![
            (NotStarted, LocalClose, AwaitingReply { deadline: later }, SendClose),
            (NotStarted, RemoteClose, fresh_drain(false), ReportRequest),
            (NotStarted, LocalFailure, fresh_drain(true), SendClose),
            (NotStarted, WriteShut, NotStarted, Nothing),
            (NotStarted, RemoteEof, Closed, Failed),
            (NotStarted, Timeout, NotStarted, Nothing),
            (NotStarted, Abort, Closed, Failed),

            (awaiting, LocalClose, awaiting, Nothing),
            (awaiting, RemoteClose, drain(false, false), Nothing),
            (awaiting, LocalFailure, fresh_drain(true), Nothing),
            (awaiting, WriteShut, awaiting, Nothing),
            (awaiting, RemoteEof, Closed, Failed),
            (awaiting, Timeout, Closed, Failed),
            (awaiting, Abort, Closed, Failed),

            (drain(false, false), LocalClose, drain(false, false), Nothing),
            (drain(false, false), RemoteClose, drain(false, false), Nothing),
            (drain(false, false), LocalFailure, drain(false, false), Nothing),
            (drain(false, false), WriteShut, Closed, Finished),
            (drain(false, false), RemoteEof, drain(false, false), Nothing),
            (drain(false, false), Timeout, Closed, Finished),
            (drain(false, false), Abort, Closed, Failed),

            (drain(true, false), WriteShut, drain(true, true), Nothing),
            (drain(true, false), RemoteEof, drain(false, false), Nothing),
            (drain(true, false), Timeout, Closed, Finished),
            (drain(true, false), Abort, Closed, Failed),
            (drain(true, true), RemoteEof, Closed, Finished),
            (drain(true, true), Timeout, Closed, Finished),

            (Closed, LocalClose, Closed, Nothing),
            (Closed, RemoteClose, Closed, Nothing),
            (Closed, LocalFailure, Closed, Nothing),
            (Closed, WriteShut, Closed, Nothing),
            (Closed, RemoteEof, Closed, Nothing),
            (Closed, Timeout, Closed, Nothing),
            (Closed, Abort, Closed, Nothing),
        ];
        for (from, input, to, effect) in table {
            assert_eq!(
                from.on(input, now, TIMEOUT),
                (to, effect),
                "{from:?} on {input:?}"
            );
        }
    }

    #[test]
    fn deadlines_belong_to_waiting_states_only() {
        let t = crate::test_epoch();
        assert_eq!(NotStarted.deadline(), None);
        assert_eq!(AwaitingReply { deadline: t }.deadline(), Some(t));
        assert_eq!(
            Draining {
                deadline: t,
                wait_for_eof: true,
                write_shut: false
            }
            .deadline(),
            Some(t)
        );
        assert_eq!(Closed.deadline(), None);
    }
}
