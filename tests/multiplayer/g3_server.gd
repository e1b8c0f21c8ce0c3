# A Godot 3.2 relay server bot for wspeer's Godot 3 mode tests: listens with WebSocketServer
# in multiplayer mode (gd_mp_api = true), prints every multiplayer event on stdout, and obeys
# commands that arrive as `send_bytes` packets from any client:
#   "send <to> <text>"  send_bytes(<text>, <to>) from the server
#   "kick <id>"         disconnect_peer(<id>)
#   "quit"              stop and exit 0
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
	var port = int(arg("--port", "0"))
	var protocols = PoolStringArray()
	if arg("--protocol", "") != "":
		protocols.append(arg("--protocol", ""))
	server.bind_ip = "127.0.0.1"
	multiplayer.connect("network_peer_connected", self, "_on_peer_connected")
	multiplayer.connect("network_peer_disconnected", self, "_on_peer_disconnected")
	multiplayer.connect("network_peer_packet", self, "_on_packet")
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


func _on_packet(id, packet):
	var text = packet.get_string_from_utf8()
	print("packet ", id, " ", text)
	var words = text.split(" ", false, 2)
	if words.size() == 3 and words[0] == "send":
		var err = multiplayer.send_bytes(words[2].to_utf8(), int(words[1]))
		print("sent ", words[1], " ", words[2], " ", err)
	elif words.size() == 2 and words[0] == "kick":
		server.disconnect_peer(int(words[1]), 4000, "kicked")
		print("kicked ", words[1])
	elif text == "quit":
		server.stop()
		print("quitting")
		quit(0)


func _idle(_delta):
	if OS.get_ticks_msec() > deadline_ms:
		print("time limit reached")
		quit(4)
