# The node /root/Main of the Godot 3.2 RPC bots (g3_rpc_client.gd, g3_rpc_server.gd) for
# tests/rpc_godot3.rs: the RPC methods and the property that wspeer calls and sets. Every
# call it gets is printed as
#   "<method> <sender id> <hex of var2bytes(arguments as an Array)> <str(arguments)>"
# so the test compares values byte for byte (floats exactly, no printing involved).
# On _ready it prints "SET <name> <hex>" for each argument set of arg_sets(), the table
# that tests/rpc_godot3.rs also has, by name.
extends Node

# Fills the parameters a call leaves out: GDScript 3 has no variadic functions, so every
# method takes up to four arguments, each defaulting to this marker.
const NONE = "__none__"

# Set by the server bot: answer each echo with echo_reply, same arguments, to the caller.
var answer_echo = false
# The arguments of each echo_reply received, in order (the client bot waits on its size).
var replies = []

remote var rv = 0


# The argument sets the client bot calls echo with (twice each).
func arg_sets():
	return [
		["int", [7]],
		["int_64", [1099511627776]],
		["float_f32", [1.5]],
		["float_f64", [0.1]],
		["string", ["héllo"]],
		["vector2", [Vector2(1, -2.5)]],
		["array", [[1, "a", [true]]]],
		["dictionary", [{"k": 1, "n": null}]],
		["pool_byte_array", [PoolByteArray([1, 2, 3])]],
		["null", [null]],
		["no_args", []],
		["four_args", ["hi", -7, 0.1, Vector2(0.5, 0)]],
		["color_bool_null", [Color(1, 0, 0.5, 1), false, null]],
	]


func _ready():
	for entry in arg_sets():
		print("SET ", entry[0], " ", var2bytes(entry[1]).hex_encode())


# The arguments actually passed: those before the first NONE.
func collect(list):
	var out = []
	for value in list:
		if typeof(value) == TYPE_STRING:
			if value == NONE:
				break
		out.append(value)
	return out


func report(method, args):
	var sender = get_tree().get_rpc_sender_id()
	print(method, " ", sender, " ", var2bytes(args).hex_encode(), " ", str(args))
	return sender


remote func echo(a = NONE, b = NONE, c = NONE, d = NONE):
	var args = collect([a, b, c, d])
	var sender = report("echo", args)
	if answer_echo:
		callv("rpc_id", [sender, "echo_reply"] + args)


remote func echo_reply(a = NONE, b = NONE, c = NONE, d = NONE):
	var args = collect([a, b, c, d])
	report("echo_reply", args)
	replies.append(args)


# Only between bots (relayed): the wspeer server in between does not declare it.
remote func note(a = NONE, b = NONE, c = NONE, d = NONE):
	report("note", collect([a, b, c, d]))


# Asks this side to set the caller's rv (rset_id), so the caller sees a REMOTE_SET.
remote func ask_rset(value):
	var sender = report("ask_rset", [value])
	rset_id(sender, "rv", value)
