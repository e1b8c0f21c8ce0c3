//! In-memory tests of `Connection`: a client and a server driven against each other with
//! simulated time, no sockets.
