# A Godot 3.2 client bot for wspeer's Godot 3 mode tests: joins with WebSocketClient in
# multiplayer mode (gd_mp_api = true), prints every multiplayer event on stdout, and obeys
# commands that arrive as `send_bytes` packets, so the Rust test can steer it over the wire:
#   "send <to> <text>"  send_bytes(<text>, <to>)
#   "quit"              disconnect and exit 0
# Arguments: --url URL [--protocol NAME] [--limit SECONDS]
extends SceneTree

var client = WebSocketClient.new()
var deadline_ms = 0


func arg(name, default_value):
	var args = OS.get_cmdline_args()
	for i in range(args.size() - 1):
		if args[i] == name:
			return args[i + 1]
	return default_value


func _init():
	# The headless build sleeps ~7 ms after every frame by default: keep round trips short.
	OS.low_processor_usage_mode_sleep_usec = 1000
	deadline_ms = OS.get_ticks_msec() + int(arg("--limit", "30")) * 1000
	var url = arg("--url", "")
	var protocols = PoolStringArray()
	if arg("--protocol", "") != "":
		protocols.append(arg("--protocol", ""))
	multiplayer.connect("network_peer_connected", self, "_on_peer_connected")
	multiplayer.connect("network_peer_disconnected", self, "_on_peer_disconnected")
	multiplayer.connect("connected_to_server", self, "_on_connected")
	multiplayer.connect("connection_failed", self, "_on_failed")
	multiplayer.connect("server_disconnected", self, "_on_server_disconnected")
	multiplayer.connect("network_peer_packet", self, "_on_packet")
	var err = client.connect_to_url(url, protocols, true)
	if err != OK:
		print("connect_error ", err)
		quit(2)
		return
	network_peer = client


func _on_connected():
	print("connected_to_server ", multiplayer.get_network_unique_id())


func _on_failed():
	print("connection_failed")
	quit(3)


func _on_server_disconnected():
	print("server_disconnected")
	quit(0)


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
	elif text == "quit":
		client.disconnect_from_host(1000, "bye")
		print("quitting")
		quit(0)


func _idle(_delta):
	if OS.get_ticks_msec() > deadline_ms:
		print("time limit reached")
		quit(4)
