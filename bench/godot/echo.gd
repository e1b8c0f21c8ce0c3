# Godot 3's WebSocketServer as an echo server, for the benchmark's optional Godot row:
#   BENCH_PORT=9080 godot3-server --path bench/godot -s echo.gd
# Echoes text as text and binary as binary. Buffers are raised to 2 MiB so that the
# 10 x 1 MiB scenario fits (Godot's defaults are 64 KiB).
extends SceneTree

var server = WebSocketServer.new()

func _init():
	OS.low_processor_usage_mode_sleep_usec = 0
	var port = int(OS.get_environment("BENCH_PORT"))
	server.bind_ip = "127.0.0.1"
	var err = server.set_buffers(2048, 4096, 2048, 4096)
	if err != OK:
		printerr("set_buffers failed: %d" % err)
	server.connect("data_received", self, "_on_data")
	err = server.listen(port)
	if err != OK:
		printerr("Unable to start server: %d" % err)
		quit(1)
		return
	print("Listening on ws://127.0.0.1:%d" % port)
	printerr("Listening on ws://127.0.0.1:%d" % port)

func _idle(_delta):
	server.poll()
	return false

func _on_data(id):
	var peer = server.get_peer(id)
	while peer.get_available_packet_count() > 0:
		var packet = peer.get_packet()
		if peer.was_string_packet():
			peer.set_write_mode(WebSocketPeer.WRITE_MODE_TEXT)
		else:
			peer.set_write_mode(WebSocketPeer.WRITE_MODE_BINARY)
		peer.put_packet(packet)
