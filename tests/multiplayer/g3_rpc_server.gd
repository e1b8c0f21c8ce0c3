# A Godot 3.2 RPC server bot for tests/rpc_godot3.rs: listens with WebSocketServer in
# multiplayer mode (gd_mp_api = true), with /root/Main running g3_rpc_main.gd set to answer
# every echo(args...) with rpc_id(caller, "echo_reply", args...) and every ask_rset(value)
# with rset_id(caller, "rv", value); prints the calls and the multiplayer events.
# Arguments: --port PORT [--protocol NAME] [--limit SECONDS]
extends SceneTree

var server = WebSocketServer.new()
var deadline_ms = 0


func arg(name, default_value):
	var args = OS.get_cmdline_args()
	for i in range(args.size() - 1):
		if args[i] == name:
			return args[i + 1]
	return default_value


func _init():
	OS.low_processor_usage_mode_sleep_usec = 1000
	deadline_ms = OS.get_ticks_msec() + int(arg("--limit", "30")) * 1000
	var main = load("res://g3_rpc_main.gd").new()
	main.name = "Main"
	main.answer_echo = true
	root.add_child(main)
	var port = int(arg("--port", "0"))
	var protocols = PoolStringArray()
	if arg("--protocol", "") != "":
		protocols.append(arg("--protocol", ""))
	server.bind_ip = "127.0.0.1"
	multiplayer.connect("network_peer_connected", self, "_on_peer_connected")
	multiplayer.connect("network_peer_disconnected", self, "_on_peer_disconnected")
	var err = server.listen(port, protocols, true)
	if err != OK:
		print("listen_error ", err)
		quit(2)
		return
	network_peer = server
	print("listening ", port)


func _on_peer_connected(id):
	print("peer_connected ", id)


func _on_peer_disconnected(id):
	print("peer_disconnected ", id)


func _idle(_delta):
	if OS.get_ticks_msec() > deadline_ms:
		print("time limit reached")
		quit(4)
