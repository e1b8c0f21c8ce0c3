# Godot 3.2 side of tests/variant_godot3.rs: checks wspeer's Godot 3 Variant codec against
# the engine's own var2bytes() / bytes2var().
#   --dump         prints "VAR <name> <hex of var2bytes(value)>" for every sample (live
#                  objects add " <instance id>"), then "DONE"
#   --check FILE   reads lines "<name> <hex>" (written by the Rust test), decodes each with
#                  bytes2var() and prints "OK <name>" or "MISMATCH <name> <what it got>",
#                  then "DONE"
# Values are compared as var2bytes(decoded) == var2bytes(expected), byte for byte: exact for
# floats (no printing), and Godot 3 compares Dictionaries by reference, not by value.
# Except: NodePaths by value (3.2.3 leaves their pad bytes uninitialised), "object_*" as
# EncodedObjectAsID with CHECK_OBJECT_ID, and "object_null" as anything == null.
# Arguments: [--dump | --check FILE] [--limit SECONDS]
extends SceneTree

# The Object id the Rust side encodes in --check mode (above 2^32: the whole u64 must arrive).
const CHECK_OBJECT_ID = 8589934597

var deadline_ms = 0
var to_free = []


func arg(name, default_value):
	var args = OS.get_cmdline_args()
	for i in range(args.size() - 1):
		if args[i] == name:
			return args[i + 1]
	return default_value


func has_arg(name):
	return name in OS.get_cmdline_args()


# [name, value] pairs; the names match the table in tests/variant_godot3.rs.
func samples():
	var node = Node.new()
	to_free.append(node)
	var list = [
		["nil", null],
		["bool_true", true],
		["bool_false", false],
		["int_zero", 0],
		["int_one", 1],
		["int_minus_one", -1],
		["int_i32_max", 2147483647],
		["int_i32_min", -2147483648],
		["int_2_pow_31", 2147483648],
		["int_below_i32_min", -2147483649],
		["int_2_pow_40", 1099511627776],
		["int_i64_max", 9223372036854775807],
		["int_i64_min", -9223372036854775807 - 1],
		["real_1_5", 1.5],
		["real_minus_2_25", -2.25],
		["real_0_1", 0.1],
		["real_1e300", 1e300],
		["real_minus_zero", -0.0],
		["real_inf", INF],
		["real_nan", NAN],
		["string_hi", "hi"],
		["string_empty", ""],
		["string_hello_accent", "héllo"],
		["string_cjk_emoji", "日本語 🎮"],
		["string_len_4", "abcd"],
		["vector2", Vector2(1, 2)],
		["vector2_fractions", Vector2(1.5, -0.1)],
		["rect2", Rect2(1, 2, 3, 4)],
		["vector3", Vector3(1.5, -2, 1e10)],
		["transform2d", Transform2D(Vector2(1, 2), Vector2(3, 4), Vector2(5, 6))],
		["plane", Plane(1, 2, 3, 4)],
		["quat", Quat(0.1, 0.2, 0.3, 0.9)],
		["aabb", AABB(Vector3(1, 2, 3), Vector3(4, 5, 6))],
		# GDScript's Basis(x, y, z) takes columns: the rows are (1,4,7), (2,5,8), (3,6,9).
		["basis", Basis(Vector3(1, 2, 3), Vector3(4, 5, 6), Vector3(7, 8, 9))],
		["transform", Transform(Vector3(1, 2, 3), Vector3(4, 5, 6), Vector3(7, 8, 9), Vector3(10, 11, 12))],
		["color", Color(1, 0, 0, 1)],
		["color_fractions", Color(0.1, 0.2, 0.3, 0.5)],
		["node_path_absolute", NodePath("/root/Main")],
		["node_path_subnames", NodePath("Main/Player:position:x")],
		["node_path_subnames_only", NodePath(":position:x")],
		["node_path_unicode", NodePath("/root/Pläyer")],
		["node_path_empty", NodePath("")],
		["rid", RID()],
		["object_node", node],
		["object_reference", Reference.new()],
		# A null Object (type OBJECT, no instance), made by decoding id 0.
		["object_null", bytes2var(PoolByteArray([0x11, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]))],
		["dictionary_empty", {}],
		["dictionary_one", {"k": true}],
		["dictionary_mixed", {1: [2, "x"], "d": {"e": null}, Vector2(1, 2): 1.5, 2147483648: "big"}],
		["array_empty", []],
		["array_int_string", [1, "a"]],
		["array_nested", [[1, [2, []]], {"a": 1}, PoolByteArray([1, 2, 3]), null, 0.1, "é"]],
		["pool_byte_array", PoolByteArray([1, 2, 3])],
		["pool_byte_array_empty", PoolByteArray()],
		["pool_byte_array_4", PoolByteArray([0, 127, 128, 255])],
		["pool_int_array", PoolIntArray([1, -1, 2147483647, -2147483648])],
		["pool_int_array_empty", PoolIntArray()],
		["pool_real_array", PoolRealArray([1.5, 0.1, -2])],
		["pool_string_array", PoolStringArray(["ab", "", "héllo", "abc"])],
		["pool_string_array_empty", PoolStringArray()],
		["pool_vector2_array", PoolVector2Array([Vector2(1, 2), Vector2(-0.5, 0.1)])],
		["pool_vector3_array", PoolVector3Array([Vector3(1, 2, 3), Vector3(-4, 0.5, 6)])],
		["pool_color_array", PoolColorArray([Color(1, 0, 0, 1), Color(0.1, 0.2, 0.3, 0.4)])],
	]
	return list


func hex_to_bytes(text):
	var digits = "0123456789abcdef"
	var out = PoolByteArray()
	var lower = text.to_lower()
	if lower.length() % 2 != 0:
		return null
	for i in range(0, lower.length(), 2):
		var hi = digits.find(lower[i])
		var lo = digits.find(lower[i + 1])
		if hi < 0 or lo < 0:
			return null
		out.append(hi * 16 + lo)
	return out


func dump():
	for sample in samples():
		var value = sample[1]
		var line = "VAR " + sample[0] + " " + var2bytes(value).hex_encode()
		if typeof(value) == TYPE_OBJECT and value != null:
			line += " " + str(value.get_instance_id())
		print(line)
	print("DONE")


func describe(value):
	return "type " + str(typeof(value)) + " value " + str(value) + " bytes " + var2bytes(value).hex_encode()


# One value per call: when bytes2var() refuses the bytes, the script error ends only this
# call, and the missing "OK <name>" line tells the test.
func check_one(name, bytes, expected):
	var got = bytes2var(bytes)
	var good = false
	if name == "object_null":
		# Object id 0 is a null Object; 3.2.3 itself writes one as a bare NIL header, so
		# either form is accepted.
		good = got == null
	elif name.begins_with("object_"):
		# Objects travel as ids: bytes2var() gives an EncodedObjectAsID.
		good = (
			typeof(got) == TYPE_OBJECT
			and got != null
			and got is EncodedObjectAsID
			and got.get_object_id() == CHECK_OBJECT_ID
		)
	elif not expected.has(name):
		print("MISMATCH ", name, " no such sample; decoded ", describe(got))
		return
	elif typeof(expected[name]) == TYPE_NODE_PATH:
		# Godot 3.2 leaves NodePath pad bytes uninitialised in var2bytes(): compare values.
		good = typeof(got) == TYPE_NODE_PATH and got == expected[name]
	else:
		good = var2bytes(got) == var2bytes(expected[name])
	if good:
		print("OK ", name)
	else:
		print("MISMATCH ", name, " ", describe(got))


func check(path):
	var expected = {}
	for sample in samples():
		expected[sample[0]] = sample[1]
	var file = File.new()
	var err = file.open(path, File.READ)
	if err != OK:
		print("cannot open ", path, ": ", err)
		return 2
	while not file.eof_reached():
		var line = file.get_line().strip_edges()
		if line == "":
			continue
		var words = line.split(" ", false)
		var name = words[0]
		var bytes = hex_to_bytes(words[1]) if words.size() == 2 else null
		if bytes == null:
			print("MISMATCH ", name, " unreadable line: ", line)
			continue
		check_one(name, bytes, expected)
	file.close()
	print("DONE")
	return 0


func _init():
	deadline_ms = OS.get_ticks_msec() + int(arg("--limit", "20")) * 1000
	var code = 0
	if has_arg("--dump"):
		dump()
	elif arg("--check", "") != "":
		code = check(arg("--check", ""))
	else:
		print("usage: --dump | --check FILE")
		code = 2
	for object in to_free:
		object.free()
	to_free.clear()
	quit(code)


func _idle(_delta):
	if OS.get_ticks_msec() > deadline_ms:
		print("time limit reached")
		quit(4)
