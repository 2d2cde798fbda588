-- luacheck configuration: plain Lua 5.4 everywhere.
std = "lua54"
max_line_length = 120
