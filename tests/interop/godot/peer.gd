# Interop peer for wspeer: Godot 3.2 WebSocketClient / WebSocketServer (gd_mp_api off:
# packets through get_peer(id)), running the two-session script of
# tests/interop/harness.rs.
#
#   godot3-server --path tests/interop/godot -s peer.gd --wsp-role=client \
#       --wsp-url=ws://127.0.0.1:PORT/ --wsp-sizes=0,1,125 [--wsp-buffers-kb=512]
#       [--wsp-ca=CA.pem]   (for wss://: verify_ssl on, trusting this certificate)
#   godot3-server --path tests/interop/godot -s peer.gd --wsp-role=server \
#       --wsp-port=PORT --wsp-sizes=0,1,125 [--wsp-buffers-kb=512]   (prints "READY <port>")
#       [--wsp-cert=CERT.pem --wsp-key=KEY.pem]   (TLS server)
#   godot3-server --path tests/interop/godot -s peer.gd --wsp-role=echo --wsp-port=PORT
#       A plain echo server (same type back) that prints what it sees: "packet <n> <text|binary>
#       <size>", "close_request <code> <reason>", "disconnected <clean>"; for probing limits.
#
# --wsp-buffers-kb raises set_buffers(in_kb, 1024, out_kb, 1024): Godot 3's default
# buffers (64 KiB each way) cannot hold a message of 64 KiB or more.
# Prints PASS and exits 0, or prints "FAIL: ..." and exits 1.
extends SceneTree

const PROTOCOL = "wspeer-interop"
const OFFERED = ["bogus", "wspeer-interop"]
const PEER_CLOSE_CODE = 4001
const PEER_CLOSE_REASON = "peer bye ✓"
const WSPEER_CLOSE_CODE = 4002
const WSPEER_CLOSE_REASON = "wspeer bye ✓"
const TIMEOUT_MS = 25000

var role = ""
var base_url = ""
var port = 0
var sizes = []
var buffers_kb = 0
var ca_path = ""
var cert_path = ""
var key_path = ""
var msgs = []  # [is_text, size] pairs: for every size, text then binary

var ws = null  # the WebSocketClient or WebSocketServer
var peer_id = 0  # the connection's id (1 on a client)
var session = 0
var step = "idle"  # idle, connecting, a, b, closing, await_close
var index = 0
var close_seen = null  # [code, reason] of the close frame received
var start_next = false
var finished = false
var started_ms = 0
var cache = {}


func _init():
	OS.low_processor_usage_mode_sleep_usec = 0
	started_ms = OS.get_ticks_msec()
	for arg in OS.get_cmdline_args():
		if not arg.begins_with("--wsp-") or arg.find("=") < 0:
			continue
		var eq = arg.find("=")
		var key = arg.substr(6, eq - 6)
		var value = arg.substr(eq + 1, arg.length() - eq - 1)
		if key == "role":
			role = value
		elif key == "url":
			base_url = value
		elif key == "port":
			port = int(value)
		elif key == "ca":
			ca_path = value
		elif key == "cert":
			cert_path = value
		elif key == "key":
			key_path = value
		elif key == "buffers-kb":
			buffers_kb = int(value)
		elif key == "sizes":
			for s in value.split(","):
				sizes.append(int(s))
	for size in sizes:
		msgs.append([true, size])
		msgs.append([false, size])
	print("godot %s, role %s, buffers %d KiB" % [Engine.get_version_info().string, role, buffers_kb])
	if role == "client":
		start_client()
	elif role == "server" or role == "echo":
		start_server()
	else:
		fail("unknown role '%s'" % role)


func _idle(_delta):
	if finished:
		return false
	if ws != null:
		ws.poll()
	if start_next and not finished:
		start_next = false
		start_client()
	if OS.get_ticks_msec() - started_ms > TIMEOUT_MS:
		fail("timed out: session %d, step %s, message %d" % [session, step, index])
	return false


func fail(msg):
	if finished:
		return
	finished = true
	print("FAIL: ", msg)
	quit(1)


func check_ok(err, what):
	if err != OK:
		fail("%s failed with error %d" % [what, err])


# ----- the generator of harness.rs, byte for byte -----

func payload(is_text, size, salt):
	var key = "%s/%d/%d" % [is_text, size, salt]
	if cache.has(key):
		return cache[key]
	var out = PoolByteArray()
	out.resize(size)
	if not is_text:
		for i in range(size):
			out[i] = (i * 31 + salt * 17 + (i >> 9)) & 255
	else:
		var tokens = [[], [0xC3, 0xA9], [0xE2, 0x82, 0xAC], [0xF0, 0x9F, 0x98, 0x80]]
		var n = 0
		var j = salt
		while true:
			var token = tokens[j % 4]
			if j % 4 == 0:
				token = [65 + ((j >> 2) % 26)]
			if n + token.size() > size:
				break
			for b in token:
				out[n] = b
				n += 1
			j += 1
		while n < size:
			out[n] = 45
			n += 1
	cache[key] = out
	return out


func verify(pkt, is_text, m, salt, what):
	if is_text != m[0]:
		fail("%s: expected a %s message, got %s" % [what, "text" if m[0] else "binary", "text" if is_text else "binary"])
		return false
	var expected = payload(m[0], m[1], salt)
	if pkt.size() != expected.size() or pkt != expected:
		var first = 0
		while first < pkt.size() and first < expected.size() and pkt[first] == expected[first]:
			first += 1
		fail("%s: got %d bytes, expected %d; first difference at byte %d" % [what, pkt.size(), expected.size(), first])
		return false
	return true


# ----- the script -----

func opened(protocol):
	if protocol != PROTOCOL:
		fail("session %d: selected sub-protocol '%s'" % [session, protocol])
		return
	step = "a"
	index = 0
	close_seen = null


func send(data, is_text):
	var p = ws.get_peer(peer_id)
	p.set_write_mode(WebSocketPeer.WRITE_MODE_TEXT if is_text else WebSocketPeer.WRITE_MODE_BINARY)
	check_ok(p.put_packet(data), "put_packet of %d bytes" % data.size())


func send_b():
	var m = msgs[index]
	send(payload(m[0], m[1], 10 * session + 2), m[0])


func read_packets():
	var p = ws.get_peer(peer_id)
	while not finished and p.get_available_packet_count() > 0:
		var pkt = p.get_packet()
		on_packet(pkt, p.was_string_packet())


func on_packet(pkt, is_text):
	if finished:
		return
	if step == "a":
		var what = "session %d: wspeer's message %d (%d bytes)" % [session, index, msgs[index][1]]
		if not verify(pkt, is_text, msgs[index], 10 * session + 1, what):
			return
		send(pkt, is_text)
		index += 1
		if index == msgs.size():
			step = "b"
			index = 0
			send_b()
	elif step == "b":
		var what = "session %d: wspeer's echo of message %d (%d bytes)" % [session, index, msgs[index][1]]
		if not verify(pkt, is_text, msgs[index], 10 * session + 2, what):
			return
		index += 1
		if index < msgs.size():
			send_b()
		else:
			end_exchange()
	else:
		fail("session %d: unexpected %d-byte message in step %s" % [session, pkt.size(), step])


func end_exchange():
	if session == 0:
		step = "closing"
		if role == "client":
			ws.disconnect_from_host(PEER_CLOSE_CODE, PEER_CLOSE_REASON)
		else:
			ws.disconnect_peer(peer_id, PEER_CLOSE_CODE, PEER_CLOSE_REASON)
	else:
		step = "await_close"


func got_close(code, reason):
	close_seen = [code, reason]


func session_closed(was_clean):
	if finished:
		return
	if step == "closing":
		# Godot 3 ignores every frame once it has sent its close (the "closing" flag in
		# wsl_msg_recv_callback), so it never records the answer: was_clean is false for any
		# close it starts, whatever the other side does. Not checked here: wspeer checks
		# the close it received, and that it completed.
		print("session 0: closed with %d %s; Godot reports was_clean=%s" % [PEER_CLOSE_CODE, PEER_CLOSE_REASON, str(was_clean)])
	elif step == "await_close":
		if not was_clean or close_seen == null or close_seen[0] != WSPEER_CLOSE_CODE or close_seen[1] != WSPEER_CLOSE_REASON:
			fail("session 1: expected wspeer's close %d %s, got %s (clean: %s)" % [WSPEER_CLOSE_CODE, WSPEER_CLOSE_REASON, str(close_seen), str(was_clean)])
			return
		print("session 1: wspeer closed with %d %s; clean" % [close_seen[0], close_seen[1]])
	else:
		fail("session %d: connection closed in step %s, message %d (clean: %s, close %s)" % [session, step, index, str(was_clean), str(close_seen)])
		return
	session += 1
	step = "idle"
	if session == 2:
		finished = true
		print("PASS")
		quit(0)
	elif role == "client":
		start_next = true
	else:
		step = "connecting"


# ----- client -----

func start_client():
	ws = WebSocketClient.new()
	if buffers_kb > 0:
		check_ok(ws.set_buffers(buffers_kb, 1024, buffers_kb, 1024), "set_buffers")
	if ca_path != "":
		var ca = X509Certificate.new()
		check_ok(ca.load(ca_path), "X509Certificate.load(%s)" % ca_path)
		ws.trusted_ssl_certificate = ca
		ws.verify_ssl = true
	ws.connect("connection_established", self, "_on_client_open")
	ws.connect("connection_closed", self, "_on_client_closed")
	ws.connect("connection_error", self, "_on_client_error")
	ws.connect("server_close_request", self, "_on_server_close_request")
	ws.connect("data_received", self, "_on_client_data")
	var url = base_url + ("session%d" % session)
	step = "connecting"
	check_ok(ws.connect_to_url(url, PoolStringArray(OFFERED), false), "connect_to_url(%s)" % url)


func _on_client_open(protocol):
	peer_id = 1
	opened(protocol)


func _on_client_data():
	read_packets()


func _on_server_close_request(code, reason):
	got_close(code, reason)


func _on_client_closed(was_clean):
	session_closed(was_clean)


func _on_client_error():
	fail("session %d: connection error in step %s" % [session, step])


# ----- server -----

func start_server():
	ws = WebSocketServer.new()
	ws.bind_ip = "127.0.0.1"
	if buffers_kb > 0:
		check_ok(ws.set_buffers(buffers_kb, 1024, buffers_kb, 1024), "set_buffers")
	if cert_path != "":
		var key = CryptoKey.new()
		check_ok(key.load(key_path), "CryptoKey.load(%s)" % key_path)
		var cert = X509Certificate.new()
		check_ok(cert.load(cert_path), "X509Certificate.load(%s)" % cert_path)
		ws.private_key = key
		ws.ssl_certificate = cert
	ws.connect("client_connected", self, "_on_server_open")
	ws.connect("client_disconnected", self, "_on_server_closed")
	ws.connect("client_close_request", self, "_on_client_close_request")
	ws.connect("data_received", self, "_on_server_data")
	check_ok(ws.listen(port, PoolStringArray([PROTOCOL]), false), "listen(%d)" % port)
	if not finished:
		print("READY %d" % port)
	step = "connecting"


func _on_server_open(id, protocol):
	if role == "echo":
		peer_id = id
		print("connected %d '%s'" % [id, protocol])
		return
	if step != "connecting":
		fail("session %d: unexpected connection %d in step %s" % [session, id, step])
		return
	peer_id = id
	opened(protocol)


func _on_server_data(id):
	if role == "echo":
		var p = ws.get_peer(id)
		while p.get_available_packet_count() > 0:
			var pkt = p.get_packet()
			var is_text = p.was_string_packet()
			print("packet %d %s %d" % [index, "text" if is_text else "binary", pkt.size()])
			index += 1
			p.set_write_mode(WebSocketPeer.WRITE_MODE_TEXT if is_text else WebSocketPeer.WRITE_MODE_BINARY)
			var err = p.put_packet(pkt)
			if err != OK:
				print("put_packet error %d" % err)
	elif id == peer_id:
		read_packets()


func _on_client_close_request(id, code, reason):
	if role == "echo":
		print("close_request %d %s" % [code, reason])
	elif id == peer_id:
		got_close(code, reason)


func _on_server_closed(id, was_clean):
	if role == "echo":
		print("disconnected %s" % str(was_clean))
	elif id == peer_id:
		session_closed(was_clean)
