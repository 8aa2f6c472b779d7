# sark_sync's gateway policy: may this principal invoke this tool with these parameters?
#
# Query data.sark.gateway.decision (OPAAuthorizer's default path, sark/gateway/decision) with
# the input document of docs/gateway/AUTHORIZATION.md ("The input document"):
#
#   {"action": "gateway:tool:invoke",
#    "principal": {"id": "alice", "roles": ["developer"], "teams": ["data"]},
#    "server": {"name": "warehouse", "sensitivity_level": "medium", "authorized_teams": ["data"]},
#    "tool": {"name": "query", "sensitivity_level": "low", "sensitive_params": ["dsn"],
#             "annotations": {...}},
#    "parameters": {...},
#    "context": {"request_id": "...", "timestamp": "..."}}
#
# The decision is always one object, never undefined and never a conflict:
#
#   {"allow": bool, "reason": str, "filtered_parameters": object | null, "cache_ttl": int}
#
# How it is decided, in order:
#
# 1. Fail closed. An input that is not as above is denied with the reason: another action,
#    no principal id, a sensitivity level that is not low/medium/high/critical (exact, lower
#    case), roles/teams/authorized_teams/sensitive_params that are not arrays of strings,
#    parameters that are not an object. Missing roles, teams, authorized_teams,
#    sensitive_params or parameters count as empty.
# 2. Deny rules, each one a reason in `deny`; any of them denies, whatever allowed (denies
#    override allows, admins included):
#    - clearance: the effective sensitivity, the higher of the server's and the tool's, is
#      above the principal's clearance, the highest clearance of its roles (role_clearance;
#      any authenticated principal, whatever its roles, has "low"). Several roles never
#      conflict: the highest wins.
#    - teams: the server has authorized_teams and the principal is in none of them. Admins
#      are exempt: they already clear every level, and a team list scopes who may use a
#      server day to day, not who may administer it.
#    - destructive SQL: a string anywhere in the parameters (any key, any depth) holds a
#      statement that drops, truncates or alters a schema object, or deletes or updates rows
#      without a WHERE clause; every statement of the string is checked, so
#      "SELECT 1; DROP TABLE users" is caught, in any case, with comments removed first.
#      A guard against the obvious accident, not an SQL firewall: `DELETE ... WHERE 1=1`
#      passes.
#    Tool annotations (readOnlyHint, destructiveHint, ...) come from the MCP server, which
#    the MCP spec says not to trust: they never relax a rule.
# 3. Otherwise allowed, with the reason naming the role that cleared the level and the team
#    that matched.
# Role and team names are compared exactly (case-sensitive). A denial's reason lists every
# deny rule that fired, sorted; no reason ever quotes a parameter's value.
#
# filtered_parameters: when allowed, always an object: the parameters with every sensitive
# key removed at any depth (inside objects and arrays), equal to the parameters when nothing
# was sensitive, {} when everything was. The SDK sends the filtered object to the tool
# (docs/gateway/AUTHORIZATION.md, "The decision": when not null it replaces the parameters,
# even when empty). A key is sensitive
# when, lower-cased and stripped of "_", "-", "." and spaces, it ends with one of
# sensitive_key_suffixes (password, db_password, clientSecret, X-API-Key,
# aws_secret_access_key, refresh_token ...; not max_tokens or token_count), or equals one of
# tool.sensitive_params normalized the same way. null when denied.
#
# cache_ttl (seconds the SDK may reuse the decision for the same principal, server, tool and
# parameters): 0 for every denial, so that a granted role or a fixed input takes effect at
# once; for allows, shorter as the sensitivity rises (allow_cache_ttl): 300 low, 60 medium,
# 30 high, 0 critical (re-asked every call).
#
# Written in Rego v1 and tested on OPA 1.20. `import rego.v1` is a no-op for OPA 1.x; it
# asks OPA 0.59+ to parse the file as v1 too (not tested there).
# Its tests: gateway_test.rego beside it (package sark.gateway_test), run on the real OPA
# engine by tests/integration/test_policy_rego.py.
package sark.gateway

import rego.v1

# --- Tables ------------------------------------------------------------------------------

# The sensitivity levels, in order.
levels := {"low": 1, "medium": 2, "high": 3, "critical": 4}

# The highest level each role clears. Roles not listed clear "low" (an authenticated
# principal), as does a principal without roles.
role_clearance := {
	"viewer": 1,
	"developer": 2,
	"analyst": 2,
	"operator": 2,
	"senior_developer": 3,
	"lead": 3,
	"security": 3,
	"admin": 4,
}

# Roles exempt from team restrictions.
team_exempt_roles := {"admin"}

# Seconds an allow may be cached, by effective sensitivity.
allow_cache_ttl := {"low": 300, "medium": 60, "high": 30, "critical": 0}

# Normalized endings of sensitive keys (see the header).
sensitive_key_suffixes := [
	"password", "passwd", "passphrase", "secret", "token", "apikey", "credential",
	"credentials", "privatekey", "accesskey", "authorization", "cookie",
]

# Statements that are destructive whatever follows them (matched on one statement, lower
# case, comments removed, leading space trimmed).
destructive_statements := {
	"DROP": `^drop\s+(table|database|schema|view|materialized\s+view|index|sequence|function|procedure|trigger|type|user|role)\b`,
	"TRUNCATE": `^truncate\s+(table\s+)?(only\s+)?[a-z0-9_."\x60\[\]]+\s*(,|$|\b(cascade|restrict|restart|continue)\b)`,
	"ALTER": `^alter\s+(table|database|schema|view|index|sequence|function|procedure|type|user|role|system)\b`,
}

# Statements that are destructive unless they have a WHERE clause.
unbounded_statements := {
	"DELETE without WHERE": `^delete\s+from\s`,
	"UPDATE without WHERE": `^update\s+\S+\s+set\s`,
}

# --- The decision ------------------------------------------------------------------------

# The safety net: reached only if the allow document below were ever undefined.
default decision := {
	"allow": false,
	"reason": "denied: no rule allowed the request",
	"filtered_parameters": null,
	"cache_ttl": 0,
}

decision := {
	"allow": false,
	"reason": sprintf("denied: %v", [concat("; ", sort(deny))]),
	"filtered_parameters": null,
	"cache_ttl": 0,
} if {
	count(deny) > 0
} else := {
	"allow": true,
	"reason": allow_reason,
	"filtered_parameters": filtered_parameters,
	"cache_ttl": allow_cache_ttl[effective_level],
}

# --- Input, validated (undefined when invalid: the deny rules below say why) -------------
#
# object.get and other builtins halt the evaluation with a type error on a wrong operand:
# every use is guarded by an is_object or is_string check first.

principal_id := input.principal.id if {
	is_string(input.principal.id)
	input.principal.id != ""
}

roles := strings_or_empty(input.principal, "roles")

teams := strings_or_empty(input.principal, "teams")

authorized_teams := strings_or_empty(input.server, "authorized_teams")

sensitive_params := strings_or_empty(input.tool, "sensitive_params")

parameters := value if {
	input_is_object
	value := object.get(input, "parameters", {})
	is_object(value)
}

server_level := input.server.sensitivity_level if levels[input.server.sensitivity_level]

tool_level := input.tool.sensitivity_level if levels[input.tool.sensitivity_level]

# obj[key] when it is an array of strings, [] when absent; undefined otherwise.
strings_or_empty(obj, key) := value if {
	is_object(obj)
	value := object.get(obj, key, [])
	is_array(value)
	every item in value {
		is_string(item)
	}
}

# --- Fail closed: the input's shape ------------------------------------------------------
#
# Each check is a positive rule and its deny says `not rule`: OPA makes `not f(input.x)`
# undefined, not true, when input.x is undefined, so a negated call would let a missing
# field through.

input_is_object if is_object(input)

server_is_object if is_object(input.server)

tool_is_object if is_object(input.tool)

principal_is_object if is_object(input.principal)

valid_action if input.action == "gateway:tool:invoke"

server_named if non_empty_string(input.server.name)

tool_named if non_empty_string(input.tool.name)

non_empty_string(value) if {
	is_string(value)
	value != ""
}

deny contains "no input document (an object)" if {
	not input_is_object
}

deny contains sprintf("unsupported action %v (only gateway:tool:invoke)", [action]) if {
	input_is_object
	not valid_action
	action := object.get(input, "action", null)
}

deny contains "no authenticated principal: principal.id must be a non-empty string" if {
	input_is_object
	not principal_id
}

deny contains "principal.roles must be an array of strings" if {
	principal_is_object
	not roles
}

deny contains "principal.teams must be an array of strings" if {
	principal_is_object
	not teams
}

deny contains "server must be an object" if {
	input_is_object
	not server_is_object
}

deny contains "tool must be an object" if {
	input_is_object
	not tool_is_object
}

deny contains "server.name must be a non-empty string" if {
	server_is_object
	not server_named
}

deny contains "tool.name must be a non-empty string" if {
	tool_is_object
	not tool_named
}

deny contains sprintf("unknown server sensitivity_level %v (low, medium, high, critical)", [level]) if {
	server_is_object
	not server_level
	level := object.get(input.server, "sensitivity_level", null)
}

deny contains sprintf("unknown tool sensitivity_level %v (low, medium, high, critical)", [level]) if {
	tool_is_object
	not tool_level
	level := object.get(input.tool, "sensitivity_level", null)
}

deny contains "server.authorized_teams must be an array of strings" if {
	server_is_object
	not authorized_teams
}

deny contains "tool.sensitive_params must be an array of strings" if {
	tool_is_object
	not sensitive_params
}

deny contains "parameters must be an object" if {
	input_is_object
	not parameters
}

# --- Clearance: roles against the effective sensitivity ----------------------------------

effective_rank := max({levels[server_level], levels[tool_level]})

effective_level := level if {
	some level, rank in levels
	rank == effective_rank
}

clearance_rank := max({role_clearance[role] | some role in roles} | {1})

clearance_level := level if {
	some level, rank in levels
	rank == clearance_rank
}

# The roles that give the clearance (sorted); empty when it comes from authentication.
clearing_roles := sort([role | some role in roles; role_clearance[role] == clearance_rank])

deny contains msg if {
	clearance_rank < effective_rank
	msg := sprintf(
		"insufficient clearance: %v sensitivity (server %v %v, tool %v %v) needs a role clearing it; principal %v clears %v",
		[effective_level, input.server.name, server_level, input.tool.name, tool_level, principal_id, clearance_level],
	)
}

# --- Teams -------------------------------------------------------------------------------

team_exempt if {
	some role in roles
	role in team_exempt_roles
}

shared_teams := sort([team | some team in teams; team in authorized_teams])

deny contains msg if {
	count(authorized_teams) > 0
	count(shared_teams) == 0
	not team_exempt
	msg := sprintf(
		"team restriction: server %v is limited to teams %v; principal %v is in %v",
		[input.server.name, sort(authorized_teams), principal_id, sort(teams)],
	)
}

# --- Destructive SQL ---------------------------------------------------------------------

deny contains sprintf("destructive SQL (%v) in parameter %v", [kind, path_text(path)]) if {
	walk(parameters, [path, value])
	is_string(value)
	some statement in sql_statements(value)
	some kind in statement_kinds(statement)
}

# The statements of a string: comments removed, split on ";", lower case, trimmed.
sql_statements(text) := [trim_space(statement) |
	some statement in split(lower(strip_sql_comments(text)), ";")
]

strip_sql_comments(text) := regex.replace(regex.replace(text, `(?s)/\*.*?\*/`, " "), `--[^\n]*`, " ")

statement_kinds(statement) := {kind | some kind, pattern in destructive_statements; regex.match(pattern, statement)} | {kind |
	some kind, pattern in unbounded_statements
	regex.match(pattern, statement)
	not regex.match(`\bwhere\b`, statement)
}

# "a.0.b" for the path ["a", 0, "b"].
path_text(path) := concat(".", [sprintf("%v", [segment]) | some segment in path])

# --- Allow: reason and filtered parameters -----------------------------------------------

allow_reason := sprintf("allowed: %v sensitivity (server %v %v, tool %v %v) cleared by %v; %v%v", [
	effective_level, input.server.name, server_level, input.tool.name, tool_level,
	clearance_source, team_text, filtering_text,
])

clearance_source := sprintf("role %v", [clearing_roles[0]]) if count(clearing_roles) > 0

clearance_source := "authentication (low)" if count(clearing_roles) == 0

team_text := "no team restriction" if count(authorized_teams) == 0

team_text := sprintf("team %v authorized", [shared_teams[0]]) if {
	count(authorized_teams) > 0
	count(shared_teams) > 0
}

team_text := "team restriction waived for admin" if {
	count(authorized_teams) > 0
	count(shared_teams) == 0
	team_exempt
}

filtering_text := "" if count(sensitive_paths) == 0

filtering_text := sprintf("; %v sensitive parameter(s) removed", [count(removed_paths)]) if {
	count(sensitive_paths) > 0
}

# Normalized names from tool.sensitive_params.
extra_sensitive_keys := {normalize_key(name) | some name in sensitive_params}

normalize_key(key) := regex.replace(lower(key), `[\s_.\-]+`, "")

sensitive_key(key) if {
	is_string(key)
	some suffix in sensitive_key_suffixes
	endswith(normalize_key(key), suffix)
}

sensitive_key(key) if {
	is_string(key)
	normalize_key(key) in extra_sensitive_keys
}

# Every path (segments as strings, which json.remove needs for array indices) that ends in a
# sensitive object key, at any depth.
sensitive_paths := [[sprintf("%v", [segment]) | some segment in path] |
	walk(parameters, [path, _])
	count(path) > 0
	sensitive_key(path[count(path) - 1])
]

# The sensitive paths not inside another one: what is really removed (for the reason).
removed_paths := [path |
	some path in sensitive_paths
	not inside_sensitive(path)
]

inside_sensitive(path) if {
	some other in sensitive_paths
	count(other) < count(path)
	array.slice(path, 0, count(other)) == other
}

filtered_parameters := json.remove(parameters, sensitive_paths)
