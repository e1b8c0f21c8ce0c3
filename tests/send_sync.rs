//! Every public type is `Send + Sync`, checked at compile time: a peer, server or
//! multiplayer peer can live in a `static Mutex`, an `Arc`, or an ECS resource (a Bevy
//! `Resource` must be both), and move to another thread between frames.

use wspeer::multiplayer_wire::MalformedPacket;
use wspeer::multiplayer_wire::rpc::{RpcError, RpcTable};
use wspeer::proto::{Connection, Event};
use wspeer::variant::{Array, Dictionary, GodotVersion, Limits, NodePath, VariantError};
use wspeer::{
    ConnectionStatus, Error, ForwardedHeader, HandshakeRequest, IpNetwork, LookupFn,
    MultiplayerConfig, MultiplayerEvent, MultiplayerProtocol, Packet, PeerConfig, PeerStats,
    ProxyProtocol, RemoteCall, RemoteSet, Resolver, RpcMode, RpcNode, ServerConfig, ServerEvent,
    SourceToken, State, TlsOptions, TransferMode, Variant, WebSocketMultiplayerPeer, WebSocketPeer,
    WebSocketServer, WriteMode,
};

fn assert_send_sync<T: Send + Sync + ?Sized>() {}

#[test]
fn public_types_are_send_and_sync() {
    // The three drivers a game keeps between frames.
    assert_send_sync::<WebSocketPeer>();
    assert_send_sync::<WebSocketServer>();
    assert_send_sync::<WebSocketMultiplayerPeer>();
    // The sans-I/O layer.
    assert_send_sync::<Connection>();
    assert_send_sync::<Event>();
    assert_send_sync::<HandshakeRequest>();
    assert_send_sync::<Packet>();
    assert_send_sync::<PeerStats>();
    assert_send_sync::<State>();
    assert_send_sync::<WriteMode>();
    // Events, errors and values handed to the application.
    assert_send_sync::<ServerEvent>();
    assert_send_sync::<MultiplayerEvent>();
    assert_send_sync::<RemoteCall>();
    assert_send_sync::<RemoteSet>();
    assert_send_sync::<ConnectionStatus>();
    assert_send_sync::<SourceToken>();
    assert_send_sync::<ProxyProtocol>();
    assert_send_sync::<ForwardedHeader>();
    assert_send_sync::<IpNetwork>();
    assert_send_sync::<wspeer::proto::ProxyHeader>();
    assert_send_sync::<Error>();
    assert_send_sync::<VariantError>();
    assert_send_sync::<RpcError>();
    assert_send_sync::<MalformedPacket>();
    assert_send_sync::<Variant>();
    assert_send_sync::<Array>();
    assert_send_sync::<Dictionary>();
    assert_send_sync::<NodePath>();
    // Configuration.
    assert_send_sync::<PeerConfig>();
    assert_send_sync::<ServerConfig>();
    assert_send_sync::<MultiplayerConfig>();
    assert_send_sync::<MultiplayerProtocol>();
    assert_send_sync::<TransferMode>();
    assert_send_sync::<TlsOptions>();
    assert_send_sync::<Resolver>();
    assert_send_sync::<LookupFn>();
    assert_send_sync::<GodotVersion>();
    assert_send_sync::<Limits>();
    assert_send_sync::<RpcMode>();
    assert_send_sync::<RpcNode>();
    assert_send_sync::<RpcTable>();
}
