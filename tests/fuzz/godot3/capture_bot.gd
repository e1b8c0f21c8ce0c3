# A Godot 3.2 MultiplayerAPI bot for tests/fuzz/capture.py --godot3: the real engine makes
# the traffic whose raw WebSocket messages become the multiplayer_packets fuzz seeds.
#   --role server --port PORT            WebSocketServer.listen(PORT, [], gd_mp_api = true)
#   --role client --url URL --linger S   WebSocketClient.connect_to_url(URL, [], true)
# Every bot puts a node /root/Capture (an RPC method `hello` and an rset property `value`,
# both `remote`) in its tree. A client waits until it knows one other client, then sends
# RAW packets (send_bytes) to the server, to everyone, to the other client and to all but
# the other client, RPCs (rpc_id to the server and the other client, rpc to everyone) and
# rsets (rset_id to the server, rset to everyone); S seconds later it disconnects. The
# server answers each client's first RAW packet with a RAW packet, an RPC and an rset of
# its own, and quits once both clients are gone. Every bot prints what it does and gets.
# Arguments also: --limit SECONDS (exit 4 when reached).
extends SceneTree


class Capture:
	extends Node
	remote var value = 0 setget set_value

	remote func hello(number, text):
		print("rpc hello from ", get_tree().get_rpc_sender_id(), ": ", number, " ", text)

	func set_value(v):
		value = v
		print("rset value from ", get_tree().get_rpc_sender_id(), ": ", v)


var role = ""
var peer = null
var node = null
var deadline_ms = 0
var others = []
var acted = false
var act_at_ms = -1
var leave_at_ms = -1
var quit_at_ms = -1
var seen_clients = 0
var answered = {}


func arg(name, default_value):
	var args = OS.get_cmdline_args()
	for i in range(args.size() - 1):
		if args[i] == name:
			return args[i + 1]
	return default_value


func _init():
	OS.low_processor_usage_mode_sleep_usec = 1000
	deadline_ms = OS.get_ticks_msec() + int(arg("--limit", "30")) * 1000
	role = arg("--role", "")
	multiplayer.connect("network_peer_connected", self, "_on_peer_connected")
	multiplayer.connect("network_peer_disconnected", self, "_on_peer_disconnected")
	multiplayer.connect("network_peer_packet", self, "_on_packet")
	multiplayer.connect("connected_to_server", self, "_on_connected")
	multiplayer.connect("connection_failed", self, "_on_failed")
	if role == "server":
		peer = WebSocketServer.new()
		peer.bind_ip = "127.0.0.1"
		var port = int(arg("--port", "0"))
		var err = peer.listen(port, PoolStringArray(), true)
		if err != OK:
			print("listen_error ", err)
			quit(2)
			return
		print("listening ", port)
	elif role == "client":
		peer = WebSocketClient.new()
		var err = peer.connect_to_url(arg("--url", ""), PoolStringArray(), true)
		if err != OK:
			print("connect_error ", err)
			quit(2)
			return
	else:
		print("--role server|client")
		quit(2)
		return
	network_peer = peer


func _on_connected():
	print("connected id ", multiplayer.get_network_unique_id())


func _on_failed():
	print("connection_failed")


func _on_peer_connected(id):
	print("peer_connected ", id)
	if id != 1:
		others.append(id)
		seen_clients += 1
	if role == "client" and id != 1 and act_at_ms < 0:
		act_at_ms = OS.get_ticks_msec() + 200


func _on_peer_disconnected(id):
	print("peer_disconnected ", id)
	others.erase(id)


func _on_packet(id, packet):
	print("packet from ", id, ": ", packet.get_string_from_utf8())
	if role == "server" and not answered.has(id):
		answered[id] = true
		multiplayer.send_bytes("raw from server".to_utf8(), id)
		node.rpc_id(id, "hello", 1, "rpc from server")
		node.rset_id(id, "value", 10)
		print("answered ", id)


func act():
	var other = others[0]
	print("acting; other client ", other)
	multiplayer.send_bytes("raw to server".to_utf8(), 1)
	multiplayer.send_bytes("raw to everyone".to_utf8(), 0)
	multiplayer.send_bytes("raw to the other client".to_utf8(), other)
	multiplayer.send_bytes("raw to all but the other client".to_utf8(), -other)
	node.rpc_id(1, "hello", 7, "rpc to server")
	node.rpc_id(other, "hello", 8, "rpc to the other client")
	node.rpc("hello", 9, "rpc to everyone")
	node.rset_id(1, "value", 42)
	node.rset("value", 43)


func _idle(_delta):
	var now = OS.get_ticks_msec()
	if node == null:
		node = Capture.new()
		node.name = "Capture"
		root.add_child(node)
	if act_at_ms >= 0 and not acted and now >= act_at_ms:
		acted = true
		act()
		leave_at_ms = now + int(float(arg("--linger", "1")) * 1000)
	if leave_at_ms >= 0 and now >= leave_at_ms:
		leave_at_ms = -1
		print("leaving")
		peer.disconnect_from_host(1000, "capture done")
		quit_at_ms = now + 300
	if quit_at_ms >= 0 and now >= quit_at_ms:
		quit(0)
	if role == "server" and seen_clients >= 2 and others.empty() and quit_at_ms < 0:
		print("both clients gone")
		quit_at_ms = now + 100
	if now > deadline_ms:
		print("time limit reached")
		quit(4)
