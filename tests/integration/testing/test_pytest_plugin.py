"""sark_sync's pytest plugin (``sark_sync.testing.pytest_plugin``), run as users run it: in an
inner pytest session (``pytester``, in a child process) that loads it through its ``pytest11``
entry point, as any project with sark_sync installed does.

The inner tests record what they saw in module globals and a later inner test checks it, so
"fresh per test" and "stopped after the test" are asserted on the real objects.
"""

from __future__ import annotations

import re
from importlib.metadata import entry_points
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PYTEST_DOC = ROOT / "docs" / "integrations" / "pytest.md"
#: Seconds an inner session may take (a child Python, a few gateways).
INNER_TIMEOUT = 60.0


def run_inner(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", *args,
                                         timeout=INNER_TIMEOUT)


def test_the_plugin_is_registered_as_a_pytest11_entry_point(
        request: pytest.FixtureRequest) -> None:
    everything = entry_points()
    group = (everything.select(group="pytest11") if hasattr(everything, "select")
             else everything.get("pytest11", ()))  # Python 3.9: a dict of groups
    found = [ep.value for ep in group if ep.name == "sark_sync"]
    assert set(found) == {"sark_sync.testing.pytest_plugin"}
    assert request.config.pluginmanager.get_plugin("sark_sync") is not None


def test_each_test_gets_a_fresh_gateway_and_client_stopped_after_it(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner="""
        seen = []

        def _echo_server(gateway):
            gateway.add_server("demo")
            gateway.add_tool("demo", "echo", lambda parameters: parameters)

        def test_first(sark_gateway, sark_client):
            _echo_server(sark_gateway)
            assert sark_client.base_url == sark_gateway.url
            assert sark_client.invoke_tool("demo", "echo", {"n": 1}).json() == {"n": 1}
            seen.append((sark_gateway, sark_client))

        def test_second_has_another_gateway(sark_gateway, sark_client):
            first_gateway, first_client = seen[0]
            assert sark_gateway is not first_gateway and sark_gateway.url != first_gateway.url
            assert not first_gateway.running and first_client.closed
            assert sark_gateway.requests == []
            _echo_server(sark_gateway)
            assert sark_client.invoke_tool("demo", "echo", {"n": 2}).json() == {"n": 2}
            assert [r.path for r in sark_gateway.requests] == ["/api/v1/invoke"]
            assert sark_gateway.requests[0].headers["X-API-Key"] == "test-key"
    """)
    result = run_inner(pytester)
    result.assert_outcomes(passed=2)


def test_a_project_overrides_the_gateway_options_and_the_client_follows(
        pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
        import pytest

        @pytest.fixture
        def sark_gateway_options():
            return {"api_keys": ["project-key"], "require_user_token": True}
    """)
    pytester.makepyfile(test_inner="""
        import pytest
        import sark_sync

        def test_key_and_options(sark_gateway, sark_client, sark_settings):
            sark_gateway.add_server("demo")
            sark_gateway.add_tool("demo", "echo", lambda parameters: parameters)
            assert sark_settings["API_KEY"] == "project-key"
            with pytest.raises(sark_sync.AuthenticationError):
                sark_client.invoke_tool("demo", "echo", {})
            token = sark_gateway.issue_token("alice")
            result = sark_client.invoke_tool("demo", "echo", {"a": 1}, user_token=token)
            assert result.json() == {"a": 1}
            assert sark_gateway.requests[-1].headers["X-API-Key"] == "project-key"
    """)
    result = run_inner(pytester)
    result.assert_outcomes(passed=1)


def test_a_projects_own_fixture_of_the_same_name_wins(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
        import pytest

        @pytest.fixture
        def sark_client():
            return "the project's own"
    """)
    pytester.makepyfile(test_inner="""
        def test_own(sark_client):
            assert sark_client == "the project's own"
    """)
    run_inner(pytester).assert_outcomes(passed=1)


def test_loading_the_plugin_imports_no_framework_and_no_fixture_runs_unasked(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner="""
        import sys
        import threading

        def test_nothing_loaded(request):
            assert request.config.pluginmanager.get_plugin("sark_sync") is not None
            assert "flask" not in sys.modules and "django" not in sys.modules
            assert [t.name for t in threading.enumerate()] == ["MainThread"]
    """)
    # pytest-django, when installed, imports Django itself: leave it out to see the plugin.
    run_inner(pytester, "-p", "no:django").assert_outcomes(passed=1)


def test_no_sark_sync_turns_the_plugin_off(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner="""
        def test_uses(sark_gateway):
            pass
    """)
    result = run_inner(pytester, "-p", "no:sark_sync")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'sark_gateway' not found*"])


def test_a_flask_app_follows_each_tests_gateway(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner="""
        from flask import Flask
        from sark_sync.contrib.flask import SarkSync

        sark = SarkSync()
        app = Flask("inner")          # one app for the module, as an app at import would be
        sark.init_app(app)
        urls = []

        @app.get("/echo")
        def echo():
            return sark.invoke_tool("demo", "echo", {"text": "hi"}).json()

        def _serve(gateway):
            gateway.add_server("demo")
            gateway.add_tool("demo", "echo", lambda parameters: parameters)

        def test_one(sark_gateway, sark_flask_config):
            _serve(sark_gateway)
            app.config.update(sark_flask_config)
            assert app.test_client().get("/echo").json == {"text": "hi"}
            assert len(sark_gateway.requests) == 1
            with app.app_context():
                urls.append(sark.client.base_url)

        def test_two(sark_gateway, sark_flask_config):
            _serve(sark_gateway)
            app.config.update(sark_flask_config)
            assert app.test_client().get("/echo").json == {"text": "hi"}
            assert len(sark_gateway.requests) == 1
            with app.app_context():
                urls.append(sark.client.base_url)
            assert urls[0] != urls[1] and urls[1] == sark_gateway.url
            sark.close(app)
    """)
    run_inner(pytester).assert_outcomes(passed=2)


def test_django_settings_follow_each_tests_gateway(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
        import django
        from django.conf import settings

        def pytest_configure(config):
            settings.configure(INSTALLED_APPS=["sark_sync.contrib.django"],
                               DATABASES={}, USE_TZ=True)
            django.setup()
    """)
    pytester.makepyfile(test_inner="""
        from django.conf import settings
        from sark_sync.contrib.django import close_client, get_client

        urls = []

        def test_one(sark_gateway, sark_django_settings):
            assert settings.SARK_SYNC == sark_django_settings
            urls.append(get_client().base_url)
            assert urls[-1] == sark_gateway.url

        def test_two(sark_gateway, sark_django_settings):
            urls.append(get_client().base_url)
            assert urls == [urls[0], sark_gateway.url] and urls[0] != urls[1]
            close_client()

        def test_setting_restored_after_the_test():
            assert not hasattr(settings, "SARK_SYNC")
    """)
    run_inner(pytester).assert_outcomes(passed=3)


def test_the_examples_of_the_pytest_page_pass_in_a_pytest_session(
        pytester: pytest.Pytester) -> None:
    """docs/integrations/pytest.md: its blocks that open with ``# test_<name>.py``, as files."""
    text = PYTEST_DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    tests = [b for b in blocks if b.startswith("# test_")]
    assert len(tests) >= 2
    for number, block in enumerate(tests):
        pytester.makepyfile(**{f"test_doc_{number}": block})
    count = sum(len(re.findall(r"^def test_", block, flags=re.M)) for block in tests)
    result = run_inner(pytester, "-p", "no:django")
    result.assert_outcomes(passed=count)
