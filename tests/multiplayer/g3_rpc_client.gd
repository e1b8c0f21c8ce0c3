# A Godot 3.2 RPC client bot for tests/rpc_godot3.rs: joins with WebSocketClient in
# multiplayer mode (gd_mp_api = true), with /root/Main running g3_rpc_main.gd (which prints
# every call it gets), prints the multiplayer events, then plays a script chosen by --mode:
#   sets   for each argument set of Main.arg_sets(): rpc_id(1, "echo", args...) and wait
#          for the echo_reply, twice (the second call goes through the path cache); then
#          rset_id(1, "rv", 42), rset("rv", Vector2(3, 4)), rpc_id(1, "echo", "done"), wait
#          for its reply, print "done", disconnect and exit 0.
#   relay  once another client B joins: rpc_id(B, "note", "hi", 7),
#          rpc("echo_reply", "all", 8), rpc_id(1, "echo", "x") and wait for the reply,
#          rpc_id(B, "note", "again", 9); print "done" and stay.
#   listen (default) only print.
# Each action is printed as "action ..." when it starts.
# Arguments: --url URL [--protocol NAME] [--mode sets|relay|listen] [--limit SECONDS]
extends SceneTree

var client = WebSocketClient.new()
var main = null
var deadline_ms = 0
var mode = "listen"
# Actions still to do, each an Array: ["rpc_id", to, method, args, wait_for_reply],
# ["rpc", method, args], ["rset_id", to, property, value], ["rset", property, value],
# ["print", text], ["quit"].
var actions = []
# How many echo_replies Main must have received before the next action.
var awaited_replies = 0
var relay_peer = 0


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
	mode = arg("--mode", "listen")
	main = load("res://g3_rpc_main.gd").new()
	main.name = "Main"
	root.add_child(main)
	var url = arg("--url", "")
	var protocols = PoolStringArray()
	if arg("--protocol", "") != "":
		protocols.append(arg("--protocol", ""))
	multiplayer.connect("network_peer_connected", self, "_on_peer_connected")
	multiplayer.connect("network_peer_disconnected", self, "_on_peer_disconnected")
	multiplayer.connect("connected_to_server", self, "_on_connected")
	multiplayer.connect("connection_failed", self, "_on_failed")
	multiplayer.connect("server_disconnected", self, "_on_server_disconnected")
	var err = client.connect_to_url(url, protocols, true)
	if err != OK:
		print("connect_error ", err)
		quit(2)
		return
	network_peer = client


func _on_connected():
	print("connected_to_server ", multiplayer.get_network_unique_id())
	if mode == "sets":
		for entry in main.arg_sets():
			for _i in range(2):
				actions.append(["print", "call " + entry[0]])
				actions.append(["rpc_id", 1, "echo", entry[1], true])
		actions.append(["rset_id", 1, "rv", 42])
		actions.append(["rset", "rv", Vector2(3, 4)])
		actions.append(["rpc_id", 1, "echo", ["done"], true])
		actions.append(["print", "done"])
		actions.append(["quit"])


func _on_failed():
	print("connection_failed")
	quit(3)


func _on_server_disconnected():
	print("server_disconnected")
	quit(0)


func _on_peer_connected(id):
	print("peer_connected ", id)
	if mode == "relay" and id != 1 and relay_peer == 0:
		relay_peer = id
		actions.append(["rpc_id", id, "note", ["hi", 7], false])
		actions.append(["rpc", "echo_reply", ["all", 8]])
		actions.append(["rpc_id", 1, "echo", ["x"], true])
		actions.append(["rpc_id", id, "note", ["again", 9], false])
		actions.append(["print", "done"])


func _on_peer_disconnected(id):
	print("peer_disconnected ", id)


# Runs actions until one waits for a reply.
func run_actions():
	while actions.size() > 0 and main.replies.size() >= awaited_replies:
		var action = actions.pop_front()
		var kind = action[0]
		if kind == "print":
			print(action[1])
			continue
		print("action ", str(action))
		if kind == "rpc_id":
			main.callv("rpc_id", [action[1], action[2]] + action[3])
			if action[4]:
				awaited_replies += 1
		elif kind == "rpc":
			main.callv("rpc", [action[1]] + action[2])
		elif kind == "rset_id":
			main.rset_id(action[1], action[2], action[3])
		elif kind == "rset":
			main.rset(action[1], action[2])
		elif kind == "quit":
			client.disconnect_from_host(1000, "bye")
			quit(0)
			return


func _idle(_delta):
	run_actions()
	if OS.get_ticks_msec() > deadline_ms:
		print("time limit reached")
		quit(4)
