# Tests of gateway.rego, one behaviour a rule. Run on the real OPA engine by
# tests/integration/test_policy_rego.py (each test_ rule must evaluate to true), or with
# `opa test sark_sync/policies/`.
package sark.gateway_test

import rego.v1

import data.sark.gateway

# A developer of team "data" calls a low tool on a medium server limited to "data": allowed.
base := {
	"action": "gateway:tool:invoke",
	"principal": {"id": "alice", "roles": ["developer"], "teams": ["data"]},
	"server": {"name": "warehouse", "sensitivity_level": "medium", "authorized_teams": ["data"]},
	"tool": {
		"name": "query", "sensitivity_level": "low", "sensitive_params": ["dsn"],
		"annotations": {"readOnlyHint": true},
	},
	"parameters": {"sql": "SELECT id FROM users WHERE id = 1", "limit": 10},
	"context": {"request_id": "req-1", "timestamp": "2025-01-01T00:00:00Z"},
}

# base with the values at these JSON pointers replaced (or added).
with_values(changes) := json.patch(base, [{"op": "add", "path": path, "value": value} |
	some path, value in changes
])

decide(changes) := d if {
	d := gateway.decision with input as with_values(changes)
}

denied_for(changes, fragment) if {
	d := decide(changes)
	d.allow == false
	contains(d.reason, fragment)
	d.filtered_parameters == null
	d.cache_ttl == 0
}

allowed(changes) if decide(changes).allow == true

params(p) := {"/parameters": p}

filtered(p) := decide(params(p)).filtered_parameters

# --- The decision's shape ----------------------------------------------------------------

test_allow_decision_has_the_four_fields if {
	d := decide({})
	object.keys(d) == {"allow", "reason", "filtered_parameters", "cache_ttl"}
	d.allow == true
	is_string(d.reason)
	is_object(d.filtered_parameters)
	is_number(d.cache_ttl)
}

test_deny_decision_has_the_four_fields if {
	d := decide({"/principal/roles": ["viewer"]})
	object.keys(d) == {"allow", "reason", "filtered_parameters", "cache_ttl"}
	d.allow == false
	startswith(d.reason, "denied: ")
}

test_allow_reason_names_the_role_the_level_and_the_team if {
	d := decide({})
	d.reason == "allowed: medium sensitivity (server warehouse medium, tool query low) cleared by role developer; team data authorized"
}

# --- Roles against sensitivity levels ----------------------------------------------------

test_low_is_open_to_any_authenticated_principal if {
	d := decide({
		"/principal/roles": [], "/server/sensitivity_level": "low",
		"/server/authorized_teams": [],
	})
	d.allow == true
	contains(d.reason, "cleared by authentication (low)")
	contains(d.reason, "no team restriction")
}

test_missing_roles_and_teams_count_as_empty if {
	d := gateway.decision with input as json.patch(base, [
		{"op": "remove", "path": "/principal/roles"},
		{"op": "remove", "path": "/principal/teams"},
		{"op": "add", "path": "/server/sensitivity_level", "value": "low"},
		{"op": "add", "path": "/server/authorized_teams", "value": []},
	])
	d.allow == true
}

test_viewer_is_denied_medium if {
	denied_for({"/principal/roles": ["viewer"]}, "insufficient clearance: medium sensitivity")
}

test_unknown_roles_clear_only_low if {
	denied_for({"/principal/roles": ["intern", "Developer"]}, "principal alice clears low")
	allowed({"/principal/roles": ["intern"], "/server/sensitivity_level": "low"})
}

test_medium_roles_are_allowed_medium if {
	every role in ["developer", "analyst", "operator"] {
		allowed({"/principal/roles": [role]})
	}
}

test_developer_is_denied_high if {
	denied_for({"/server/sensitivity_level": "high"}, "insufficient clearance: high sensitivity")
}

test_senior_roles_are_allowed_high if {
	every role in ["senior_developer", "lead", "security", "admin"] {
		allowed({"/principal/roles": [role], "/server/sensitivity_level": "high"})
	}
}

test_only_admin_is_allowed_critical if {
	every role in ["viewer", "developer", "senior_developer", "lead", "security"] {
		denied_for(
			{"/principal/roles": [role], "/server/sensitivity_level": "critical"},
			"insufficient clearance: critical sensitivity",
		)
	}
	allowed({"/principal/roles": ["admin"], "/server/sensitivity_level": "critical"})
}

test_effective_sensitivity_is_the_higher_of_server_and_tool if {
	denied_for({"/tool/sensitivity_level": "high"}, "high sensitivity (server warehouse medium, tool query high)")
	denied_for(
		{"/server/sensitivity_level": "low", "/tool/sensitivity_level": "critical"},
		"critical sensitivity",
	)
	denied_for({"/server/sensitivity_level": "high", "/tool/sensitivity_level": "low"}, "high sensitivity")
}

test_a_low_and_a_high_role_give_one_decision_from_the_highest if {
	d := decide({"/principal/roles": ["viewer", "senior_developer"], "/server/sensitivity_level": "high"})
	d.allow == true
	contains(d.reason, "cleared by role senior_developer")
}

test_role_order_does_not_matter if {
	a := decide({"/principal/roles": ["admin", "viewer", "developer"], "/server/sensitivity_level": "critical"})
	b := decide({"/principal/roles": ["developer", "viewer", "admin"], "/server/sensitivity_level": "critical"})
	a == b
	a.allow == true
}

test_two_roles_of_the_same_clearance_name_the_first_sorted if {
	d := decide({"/principal/roles": ["operator", "analyst", "developer"]})
	contains(d.reason, "cleared by role analyst")
}

test_multi_role_principal_still_denied_above_its_highest_role if {
	denied_for(
		{"/principal/roles": ["viewer", "developer", "analyst"], "/server/sensitivity_level": "high"},
		"principal alice clears medium",
	)
}

# --- Team restrictions -------------------------------------------------------------------

test_a_principal_outside_the_authorized_teams_is_denied if {
	denied_for(
		{"/principal/teams": ["web", "mobile"]},
		`team restriction: server warehouse is limited to teams ["data"]; principal alice is in ["mobile", "web"]`,
	)
}

test_one_shared_team_is_enough if {
	d := decide({"/principal/teams": ["web", "ml"], "/server/authorized_teams": ["ml", "data"]})
	d.allow == true
	contains(d.reason, "team ml authorized")
}

test_no_authorized_teams_means_no_team_restriction if {
	d := decide({"/principal/teams": [], "/server/authorized_teams": []})
	d.allow == true
	contains(d.reason, "no team restriction")
}

test_team_names_are_exact if {
	denied_for({"/principal/teams": ["Data"]}, "team restriction")
}

test_clearance_does_not_lift_the_team_restriction if {
	denied_for(
		{"/principal/roles": ["senior_developer"], "/principal/teams": ["web"]},
		"team restriction",
	)
}

test_admin_is_exempt_from_team_restrictions if {
	d := decide({"/principal/roles": ["admin"], "/principal/teams": []})
	d.allow == true
	contains(d.reason, "team restriction waived for admin")
}

test_clearance_and_team_denials_are_both_given if {
	d := decide({"/principal/roles": ["viewer"], "/principal/teams": ["web"]})
	d.allow == false
	contains(d.reason, "insufficient clearance")
	contains(d.reason, "team restriction")
}

# --- Destructive SQL ---------------------------------------------------------------------

test_drop_table_is_denied if {
	denied_for(params({"sql": "DROP TABLE users"}), "destructive SQL (DROP) in parameter sql")
}

test_drop_after_a_harmless_statement_is_denied if {
	denied_for(params({"sql": "SELECT 1; DROP TABLE users"}), "destructive SQL (DROP) in parameter sql")
	denied_for(params({"query": "select 1;drop table users;"}), "destructive SQL (DROP)")
	denied_for(params({"query": "SELECT 1;\n\n  DROP TABLE users"}), "destructive SQL (DROP)")
}

test_destructive_sql_is_matched_in_any_case if {
	denied_for(params({"sql": "dRoP tAbLe users"}), "destructive SQL (DROP)")
	denied_for(params({"sql": "Truncate Table audit"}), "destructive SQL (TRUNCATE)")
}

test_comments_do_not_hide_a_statement if {
	denied_for(params({"sql": "SELECT 1; -- harmless\nDROP TABLE users"}), "destructive SQL (DROP)")
	denied_for(params({"sql": "SELECT 1;/* x */DROP/**/TABLE users"}), "destructive SQL (DROP)")
	denied_for(params({"sql": "SELECT 1 /* ; */; DROP DATABASE prod"}), "destructive SQL (DROP)")
}

test_every_kind_of_destructive_statement_is_denied if {
	denied_for(params({"sql": "DROP SCHEMA public CASCADE"}), "(DROP)")
	denied_for(params({"sql": "drop index idx_users"}), "(DROP)")
	denied_for(params({"sql": "TRUNCATE users"}), "(TRUNCATE)")
	denied_for(params({"sql": "truncate table a, b restart identity"}), "(TRUNCATE)")
	denied_for(params({"sql": "ALTER TABLE users DROP COLUMN email"}), "(ALTER)")
	denied_for(params({"sql": "alter user bob with superuser"}), "(ALTER)")
	denied_for(params({"sql": "DELETE FROM users"}), "(DELETE without WHERE)")
	denied_for(params({"sql": "UPDATE users SET admin = true"}), "(UPDATE without WHERE)")
}

test_delete_and_update_with_a_where_clause_are_allowed if {
	allowed(params({"sql": "DELETE FROM sessions WHERE expires < now()"}))
	allowed(params({"sql": "update users set name = 'x' where id = 7"}))
}

test_a_where_clause_in_another_statement_does_not_count if {
	denied_for(params({"sql": "SELECT * FROM t WHERE a = 1; DELETE FROM users"}), "(DELETE without WHERE)")
}

test_harmless_sql_and_prose_are_allowed if {
	allowed(params({"sql": "SELECT drop_date, truncated FROM alter_log WHERE deleted = false"}))
	allowed(params({"note": "Drop me a line; truncate the log please"}))
	allowed(params({"sql": "INSERT INTO t VALUES ('DROP TABLE users')"}))
}

test_destructive_sql_is_found_at_any_depth if {
	denied_for(
		params({"batch": [{"sql": "SELECT 1"}, {"steps": [{"sql": "SELECT 2; DROP TABLE users"}]}]}),
		"destructive SQL (DROP) in parameter batch.1.steps.0.sql",
	)
}

test_destructive_sql_under_any_key_is_denied if {
	denied_for(params({"comment": "drop table users"}), "in parameter comment")
}

test_denies_override_allows_even_for_admin if {
	denied_for(
		{"/principal/roles": ["admin"], "/parameters": {"sql": "SELECT 1; DROP TABLE users"}},
		"destructive SQL (DROP)",
	)
}

test_every_destructive_parameter_is_reported if {
	d := decide(params({"a": "DROP TABLE x", "b": "DELETE FROM y"}))
	d.reason == "denied: destructive SQL (DELETE without WHERE) in parameter b; destructive SQL (DROP) in parameter a"
}

test_the_reason_never_quotes_a_parameter_value if {
	d := decide(params({"password": "hunter2", "sql": "DROP TABLE hunter2"}))
	d.allow == false
	not contains(d.reason, "hunter2")
}

# --- Filtering of sensitive parameters ---------------------------------------------------

test_nothing_sensitive_leaves_the_parameters_as_they_are if {
	d := decide({})
	d.filtered_parameters == base.parameters
	not contains(d.reason, "removed")
}

test_sensitive_keys_are_removed if {
	filtered({
		"password": "p", "secret": "s", "token": "t", "api_key": "k", "apikey": "k",
		"credentials": "c", "private_key": "k", "access_key": "k", "keep": 1,
	}) == {"keep": 1}
}

test_sensitive_keys_match_without_case_or_separators if {
	filtered({
		"PASSWORD": 1, "Api-Key": 2, "apiKey": 3, "X-API-KEY": 4, "client.secret": 5,
		"Private Key": 6, "keep": 7,
	}) == {"keep": 7}
}

test_keys_ending_in_a_sensitive_word_are_removed if {
	filtered({
		"db_password": 1, "clientSecret": 2, "refresh_token": 3, "aws_secret_access_key": 4,
		"Authorization": 5, "session_cookie": 6, "keep": 7,
	}) == {"keep": 7}
}

test_keys_that_only_contain_a_sensitive_word_are_kept if {
	p := {"max_tokens": 1, "token_count": 2, "tokenizer": 3, "password_policy": 4, "secrets_path": 5}
	filtered(p) == p
}

test_sensitive_keys_are_removed_in_nested_objects if {
	filtered({"db": {"host": "h", "password": "p", "options": {"ssl": {"private_key": "k", "verify": true}}}}) == {"db": {"host": "h", "options": {"ssl": {"verify": true}}}}
}

test_sensitive_keys_are_removed_in_objects_inside_arrays if {
	filtered({"accounts": [{"user": "a", "token": "t"}, "plain", [{"secret": 1, "n": 2}]]}) == {"accounts": [{"user": "a"}, "plain", [{"n": 2}]]}
}

test_a_sensitive_key_holding_an_object_goes_whole if {
	d := decide(params({"credentials": {"user": "u", "password": "p"}, "keep": true}))
	d.filtered_parameters == {"keep": true}
	contains(d.reason, "; 1 sensitive parameter(s) removed")
}

test_the_tools_sensitive_params_are_removed_at_any_depth if {
	filtered({"dsn": "postgres://u:p@h/db", "conn": {"DSN": "x", "pool": 5}, "list": [{"dsn": 1}]}) == {"conn": {"pool": 5}, "list": [{}]}
}

test_sensitive_params_of_the_tool_are_normalized_too if {
	d := decide({"/tool/sensitive_params": ["Connection-String"], "/parameters": {"connection_string": "x", "k": 1}})
	d.filtered_parameters == {"k": 1}
}

test_all_filtered_gives_an_empty_object if {
	d := decide(params({"password": "p", "api_key": "k", "dsn": "d"}))
	d.allow == true
	d.filtered_parameters == {}
	contains(d.reason, "; 3 sensitive parameter(s) removed")
}

test_no_parameters_gives_an_empty_object if {
	d := gateway.decision with input as json.patch(base, [{"op": "remove", "path": "/parameters"}])
	d.allow == true
	d.filtered_parameters == {}
}

test_keys_with_slashes_and_tildes_are_filtered_exactly if {
	filtered({"a/b": {"token": 1, "x": 2}, "c~d": 3, "e/token": 4}) == {"a/b": {"x": 2}, "c~d": 3}
}

# --- cache_ttl ---------------------------------------------------------------------------

test_allows_are_cached_shorter_as_sensitivity_rises if {
	admin := {"/principal/roles": ["admin"]}
	decide(object.union(admin, {"/server/sensitivity_level": "low"})).cache_ttl == 300
	decide(object.union(admin, {"/server/sensitivity_level": "medium"})).cache_ttl == 60
	decide(object.union(admin, {"/server/sensitivity_level": "high"})).cache_ttl == 30
	decide(object.union(admin, {"/server/sensitivity_level": "critical"})).cache_ttl == 0
}

test_denials_are_never_cached if {
	decide({"/principal/roles": []}).cache_ttl == 0
	decide(params({"sql": "DROP TABLE x"})).cache_ttl == 0
}

# --- Fail closed -------------------------------------------------------------------------

test_no_input_is_denied if {
	d := gateway.decision with input as null
	d.allow == false
	d.reason == "denied: no input document (an object)"
}

test_an_empty_input_is_denied_with_every_reason if {
	d := gateway.decision with input as {}
	d.allow == false
	contains(d.reason, "no authenticated principal")
	contains(d.reason, "server must be an object")
	contains(d.reason, "tool must be an object")
	contains(d.reason, "unsupported action null")
}

test_another_action_is_denied if {
	denied_for({"/action": "gateway:tool:list"}, "unsupported action gateway:tool:list")
}

test_a_missing_principal_is_denied if {
	d := gateway.decision with input as json.patch(base, [{"op": "remove", "path": "/principal"}])
	d.allow == false
	contains(d.reason, "no authenticated principal")
}

test_an_empty_or_odd_principal_id_is_denied if {
	denied_for({"/principal/id": ""}, "no authenticated principal")
	denied_for({"/principal/id": 42}, "no authenticated principal")
	denied_for({"/principal": "alice"}, "no authenticated principal")
}

test_unknown_sensitivity_levels_are_denied if {
	denied_for({"/server/sensitivity_level": "secret"}, "unknown server sensitivity_level secret")
	denied_for({"/tool/sensitivity_level": "HIGH"}, "unknown tool sensitivity_level HIGH")
	denied_for({"/tool/sensitivity_level": 3}, "unknown tool sensitivity_level 3")
}

test_a_missing_sensitivity_level_is_denied if {
	d := gateway.decision with input as json.patch(base, [{"op": "remove", "path": "/tool/sensitivity_level"}])
	d.allow == false
	contains(d.reason, "unknown tool sensitivity_level null")
}

test_an_unknown_level_is_denied_even_for_admin if {
	denied_for({"/principal/roles": ["admin"], "/server/sensitivity_level": "extreme"}, "unknown server sensitivity_level")
}

test_badly_typed_lists_are_denied if {
	denied_for({"/principal/roles": "admin"}, "principal.roles must be an array of strings")
	denied_for({"/principal/roles": ["admin", 1]}, "principal.roles must be an array of strings")
	denied_for({"/principal/teams": "data"}, "principal.teams must be an array of strings")
	denied_for({"/server/authorized_teams": {"data": true}}, "server.authorized_teams must be an array of strings")
	denied_for({"/tool/sensitive_params": "dsn"}, "tool.sensitive_params must be an array of strings")
}

test_parameters_that_are_not_an_object_are_denied if {
	denied_for({"/parameters": ["DROP TABLE x"]}, "parameters must be an object")
	denied_for({"/parameters": "x"}, "parameters must be an object")
}

test_missing_server_or_tool_names_are_denied if {
	denied_for({"/server/name": ""}, "server.name must be a non-empty string")
	denied_for({"/tool/name": null}, "tool.name must be a non-empty string")
	denied_for({"/tool": "query"}, "tool must be an object")
}

test_annotations_never_relax_a_rule if {
	denied_for(
		{"/tool/annotations": {"readOnlyHint": true, "destructiveHint": false}, "/tool/sensitivity_level": "critical"},
		"insufficient clearance",
	)
}
