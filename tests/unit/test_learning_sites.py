"""A task's site (capgate.learning.sites) and the dashboard's Sites panel."""

from __future__ import annotations

import msgspec
import pytest

from capgate.api.dashboard_page import dashboard_page
from capgate.learning.report import SiteEventView, SiteView
from capgate.learning.sites import host_of, site_name, site_of
from capgate.overview import Overview


@pytest.mark.parametrize(
    ("params", "key_site", "site"),
    [
        ({"websiteURL": "https://www.Example.com:8443/login?x=1"}, None, "www.example.com"),
        ({"websiteURL": "example.com/path"}, None, "example.com"),  # no scheme
        ({"websiteURL": "https://example.com."}, None, "example.com"),
        # The page names the site before a module or the key does.
        ({"websiteURL": "https://a.example", "module": "common"}, "k", "a.example"),
        ({"module": "Common"}, "k", "common"),
        ({"CapMonsterModule": "yandex"}, "k", "yandex"),
        ({}, "My-Site", "my-site"),
        ({}, None, None),
        # Junk names no site: nothing a client sends may become a path or a label.
        ({"websiteURL": "https://[::1"}, None, None),
        ({"websiteURL": "https://../../etc"}, None, None),
        ({"module": "../../etc/passwd"}, None, None),
        ({"module": "a b"}, None, None),
        ({"module": 7}, None, None),
        ({"websiteURL": "https://" + "a" * 300 + ".example"}, None, None),
        ({"websiteURL": "x" * 3000}, None, None),
        ({"module": "*"}, None, None),  # the registry's generalist entry is no site
    ],
)
def test_the_site_of_a_task(
    params: dict[str, object], key_site: str | None, site: str | None
) -> None:
    assert site_of(params, key_site) == site


def test_site_names_and_hosts() -> None:
    assert site_name(" Shop.Example ") == "shop.example"
    assert site_name("-bad") is None and site_name("") is None and site_name("a/b") is None
    assert host_of("http://user:pw@Host.example:80/") == "host.example"
    assert host_of("") is None


def test_the_dashboard_shows_each_site_escaped() -> None:
    view = SiteView(
        site="<b>shop.example",
        labels=700,
        model_version=3,
        heldout_accuracy=0.95,
        heldout_images=140,
        threshold_precision=0.98,
        threshold_coverage=0.8,
        live_accuracy=0.97,
        audits=33,
        audits_agreed=32,
        reported_wrong=2,
        local=800,
        upstream=200,
        by_model=780,
        local_share=0.8,
        saved=800_000,
        history=[SiteEventView(0.0, "promoted", 3, 700, "promoted: <i>better</i>")],
        agreement_coverage=0.93,
    )
    overview = Overview(0.0, 0, [0] * 30, [], [], [], [], sites=[view])
    page = dashboard_page(overview, 0).decode()
    section = page[page.index('id="sites"') :]
    assert 'data-site="&lt;b&gt;shop.example"' in section and "<b>shop" not in section
    assert "v3" in section and "95.0%" in section and "97.0% (33; 2 reported)" in section
    assert "80.0%" in section and "0.80000" in section
    assert '<td class="num">80% (93%)</td>' in section  # kept over threshold (agreeing)
    assert "promoted v3" in section and "&lt;i&gt;better&lt;/i&gt;" in section
    empty = dashboard_page(Overview(0.0, 0, [0] * 30, [], [], [], []), 0).decode()
    assert "No site seen yet" in empty


def test_the_kept_share_as_tables_show_it() -> None:
    view = SiteView(
        "a.example", 0, None, None, None, None, None, None, 0, 0, 0, 0, 0, 0, None, 0, []
    )
    assert view.kept_text() == "-"  # no model serves the site
    with_model = msgspec.structs.replace(view, model_version=1, threshold_coverage=0.634)
    assert with_model.kept_text() == "63%"  # agreement not measured for this version
    both = msgspec.structs.replace(with_model, agreement_coverage=0.76)
    assert both.kept_text() == "63% (76%)"
