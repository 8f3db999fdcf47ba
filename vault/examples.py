"""Deterministic generator of realistic agent memory: bundled examples, `vault demo`, benchmarks.

Four layouts imitate real agent memory systems (OpenClaw, rAgent, Memento, Synthians). The text is
assembled from a hand-written pool about one user (Sam, a backend tech lead in Rotterdam) and ~25
distinct topics, work and personal, so that search over it has something real to find.

Everything is derived from `random.Random` instances seeded from (seed, kind): no clock, no global
random state, no uuid4. The same (scale, seed) gives byte-identical text/JSON/JSONL files and the
same database rows.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from random import Random
from typing import Any

from vault.errors import UsageError

KINDS = ("openclaw", "ragent", "memento", "synthians")

DESCRIPTIONS: dict[str, str] = {
    "openclaw": "OpenClaw workspace: MEMORY.md, daily notes, JSONL session transcripts, "
                "SQLite memory with FTS5",
    "ragent": "rAgent JSON memory files: memories, per-model conversations, extended context, "
              "user profile",
    "memento": "Memento SQLite store in WAL mode: memories with 384-d float32 embeddings, "
               "embedding cache, knowledge graph",
    "synthians": "Synthians memory core: one JSON file per memory, assemblies, memory index",
}

BASE_DATE = datetime(2026, 11, 1, 7, 0, tzinfo=timezone.utc)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

USER_NAME = "Sam Okafor"
_WORKSPACE = "/home/sam/.openclaw/workspace"
_MEMENTO_DIM = 384
_SYNTHIANS_DIM = 16

# (tool name, arguments, output); argument values and outputs may hold {placeholders}.
_Tool = tuple[str, dict[str, str], str]


@dataclass(frozen=True)
class _Topic:
    """One subject the user and the agent keep coming back to."""

    key: str
    title: str
    area: str  # "work" or "life": which section of a daily note it lands in
    tags: tuple[str, ...]
    people: tuple[str, ...]
    meeting: str  # meeting title in daily notes; "" when the topic has no meetings
    facts: tuple[str, ...]
    todos: tuple[str, ...]
    asks: tuple[str, ...]
    tools: tuple[_Tool, ...] = ()
    snippet: str = ""


# ---------------------------------------------------------------------------------------------
# The hand-written pool. Placeholders in braces ({person}, {date}, {n}, ...) are filled per
# use; any other brace text (JSON, code, PromQL) is left alone.
# ---------------------------------------------------------------------------------------------

PEOPLE: dict[str, str] = {
    "Lena Vogel": "Engineering director and Sam's manager; weekly 1:1 on Mondays at 11:00.",
    "Tomasz Nowak": "SRE lead; owns Postgres, pgbouncer and the observability stack.",
    "Aiko Tanaka": "Product designer for the driver app and the customer portal.",
    "Ravi Menon": "Data engineer; owns the warehouse, the dbt models and the nightly Airflow DAG.",
    "Jonas Berg": "Product manager for billing (Tidewater) and the enterprise features.",
    "Marta Silva": "Security engineer; runs the pen tests and reviews anything that touches auth.",
    "Chen Wei": "Frontend engineer; search UI and the Atlas relevance tooling.",
    "Fatima Zahra": "Customer success lead; brings customer escalations to the team.",
    "Olu Adeyemi": "Contract mobile developer (React Native); owns offline sync in the driver app.",
    "Ines Duarte": "Data scientist; built the search relevance evaluation set.",
    "Piet de Wit": "Platform engineer; CI runners, Docker images, Terraform.",
    "Grace Kim": "Backend engineer on Sam's team since September; pairs with Sam on observability.",
    "Marco": "Sam's partner; they alternate school pick-ups (Sam on even weeks).",
    "Ada": "Sam's daughter, 8; piano lessons on Wednesdays at 16:30.",
    "Coach Miriam": "Running coach at the Kralingen running club; writes Sam's marathon plan.",
    "Beatriz": "Portuguese tutor on italki; lessons on Thursdays at 19:00.",
}

_COLLEAGUES = tuple(name for name in PEOPLE if " " in name and name != "Coach Miriam")

_CANDIDATES = (
    "Yusuf Demir", "Elena Petrova", "Kwame Mensah", "Sofia Marino", "Daniel Cho", "Hanna Larsen",
    "Mateus Rocha", "Priya Shah",
)

_TOPICS: tuple[_Topic, ...] = (
    _Topic(
        key="billing",
        title="Tidewater billing migration",
        area="work",
        tags=("billing", "stripe", "tidewater", "webhooks"),
        people=("Jonas Berg", "Ravi Menon", "Fatima Zahra"),
        meeting="Tidewater sync",
        facts=(
            "Tidewater cutover moved to {date}; Jonas wants the Stripe webhook v2 handler behind "
            "the "
            "`billing.v2_webhooks` flag until then.",
            "Duplicate invoice bug BILL-412 traced to webhook retries: Stripe resends "
            "`invoice.paid` "
            "when we take longer than 10 s to answer, and the handler was not idempotent.",
            "Fix for BILL-412: store the Stripe event id in `processed_events` with a unique index "
            "and "
            "skip on conflict; the handler now answers in {ms} ms and defers the work to the "
            "queue.",
            "{person} confirmed that {n} customers were double-charged in October; refunds are "
            "tracked in BILL-418.",
            "Decision: proration stays on the legacy path for annual plans until finance signs off "
            "on "
            "the new rounding rules.",
            "Tax calculation moved to Stripe Tax for EU customers; the old VAT table is read-only "
            "and "
            "gets dropped after the Q1 audit.",
            "The nightly reconciliation job compares Stripe balance transactions with our ledger "
            "at "
            "02:00 UTC; the mismatch rate is down to {pct}%.",
            "Decision: every billing event handler must be idempotent and keyed on the Stripe "
            "event "
            "id; reviewers block PRs that are not.",
        ),
        todos=(
            "Write the runbook for replaying failed webhooks from the dead-letter queue "
            "(BILL-431).",
            "Ask {person} whether dunning emails should pause during the cutover window.",
            "Backfill `processed_events` for the last 30 days before enabling the unique index.",
            "Check the refund list for BILL-418 with Fatima before customers get the email.",
        ),
        asks=(
            "Can you find out why invoice in_{hex} got charged twice? Customer says it happened "
            "on the 3rd.",
            "Draft a short update for Jonas on where the Tidewater cutover stands.",
            "What did we decide about proration for annual plans?",
            "How many Stripe events did we skip as duplicates yesterday?",
        ),
        tools=(
            ("exec", {"command": "rg -n 'invoice.paid' services/billing/"},
             "services/billing/webhooks.py:41:    if event.type == \"invoice.paid\":\n"
             "services/billing/webhooks.py:88:        # invoice.paid can arrive before "
             "invoice.finalized\n"
             "services/billing/tests/test_webhooks.py:112:def test_invoice_paid_is_idempotent("
             "client, stripe_event):"),
            ("exec", {"command": "psql billing -c \"select count(*) from processed_events where "
                      "skipped and created_at > now() - interval '1 day'\""},
             " count \n-------\n   {n3}\n(1 row)"),
        ),
        snippet=(
            "```python\n"
            "def handle_event(event: stripe.Event) -> None:\n"
            "    with db.transaction():\n"
            "        inserted = db.execute(\n"
            "            \"INSERT INTO processed_events (event_id) VALUES (%s) ON CONFLICT DO "
            "NOTHING\",\n"
            "            (event.id,),\n"
            "        ).rowcount\n"
            "        if not inserted:\n"
            "            return  # a Stripe retry: already handled\n"
            "        queue.enqueue(\"billing.apply_event\", event.id)\n"
            "```"
        ),
    ),
    _Topic(
        key="observability",
        title="Lighthouse observability",
        area="work",
        tags=("observability", "opentelemetry", "grafana", "latency"),
        people=("Tomasz Nowak", "Grace Kim"),
        meeting="Lighthouse check-in",
        facts=(
            "Lighthouse: the API services now use the OpenTelemetry SDK; traces go to Tempo, "
            "metrics "
            "stay in Prometheus, logs in Loki.",
            "p99 latency on /v1/shipments is {ms} ms after the N+1 fix in the carrier lookup; the "
            "SLO "
            "is 400 ms.",
            "Tomasz set trace sampling to {pct}% head-based plus 100% of error traces; storage "
            "cost "
            "stays inside the budget.",
            "Alert fatigue: {n2} pages last week, most of them from the disk-usage alert on the "
            "log "
            "nodes; {person} proposed raising the threshold to 85%.",
            "The Grafana board 'API golden signals' is the one to link in incident channels; the "
            "old "
            "'Service overview' board is deprecated.",
            "Decision: every new service ships with a RED dashboard and a burn-rate alert before "
            "it "
            "gets production traffic (OBS-120).",
            "The daily p99 spike around 09:00 is the customer portal's dashboard prefetch hitting "
            "/v1/shipments with page_size=500.",
        ),
        todos=(
            "Add the `tenant_id` attribute to spans in the shipments service (OBS-133).",
            "Review {person}'s PR for the exemplars panel.",
            "Delete the deprecated 'Service overview' dashboard after {date}.",
        ),
        asks=(
            "Why is p99 on the shipments API spiking every morning around 09:00?",
            "Summarise last week's pages by alert name.",
            "Write a PromQL query for the 5xx error ratio per route.",
        ),
        tools=(
            ("exec", {"command": "curl -s 'http://prometheus:9090/api/v1/query' --data-urlencode "
                      "'query=histogram_quantile(0.99, sum by (le) (rate(http_server_duration_"
                      "seconds_bucket{route=\"/v1/shipments\"}[5m])))'"},
             "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\","
             "\"result\":[{\"metric\":{},\"value\":[1793520000,\"0.{ms}\"]}]}}"),
            ("read", {"path": "ops/pages-last-week.csv"},
             "alert,count\nLogNodeDiskUsage,{n2}\nApiHighErrorRate,{n}\nPgbouncerWaitingClients,2\n"
             "CertificateExpiry,1"),
        ),
        snippet=(
            "```promql\n"
            "sum by (route) (rate(http_requests_total{status=~\"5..\"}[5m]))\n"
            "  / sum by (route) (rate(http_requests_total[5m]))\n"
            "```"
        ),
    ),
    _Topic(
        key="search",
        title="Atlas search relevance",
        area="work",
        tags=("search", "opensearch", "relevance", "atlas"),
        people=("Chen Wei", "Ines Duarte", "Ravi Menon"),
        meeting="Search sync",
        facts=(
            "Atlas: product search moves from Elasticsearch 7.10 to OpenSearch 2.x; index aliases "
            "let "
            "us flip back within minutes.",
            "The relevance eval set has {n3} labelled queries; nDCG@10 went from 0.61 to 0.68 with "
            "the new synonym list.",
            "Synonyms live in `search/config/synonyms.txt`; 'pallet' ⇔ 'skid' and 'reefer' ⇔ "
            "'refrigerated container' were the big wins.",
            "BM25 k1 tuned to 1.1 on the title field; the description field is boosted down to 0.4 "
            "because it is mostly boilerplate.",
            "{person} found that zero-result queries are {pct}% of traffic, mostly typos in port "
            "names "
            "(Rotterdam, Antwerpen, Hamburg).",
            "Decision: no vector search in Atlas until the eval set covers long-tail queries "
            "(SRCH-77).",
        ),
        todos=(
            "Add fuzzy matching for port names (SRCH-81).",
            "Share the nDCG report with {person} before the search sync on {weekday}.",
            "Reindex the staging cluster with the new analyzer.",
        ),
        asks=(
            "Compare the nDCG numbers for the last two relevance runs.",
            "Why does 'reefer container' return zero results on staging?",
            "Draft the plan for the OpenSearch cutover.",
        ),
        tools=(
            ("exec", {"command": "curl -s 'localhost:9200/_cat/indices/products*?v'"},
             "health status index       pri rep docs.count store.size\n"
             "green  open   products_v7   3   1    1284410      2.1gb\n"
             "green  open   products_v8   3   1    1284410      1.9gb"),
            ("read", {"path": "search/eval/report-latest.md"},
             "| run | nDCG@10 | MRR | zero-result rate |\n|---|---|---|---|\n"
             "| baseline | 0.61 | 0.55 | 7.9% |\n| synonyms-v2 | 0.68 | 0.60 | {pct}% |"),
        ),
        snippet=(
            "```json\n"
            "{\"query\": {\"multi_match\": {\"query\": \"reefer container\", "
            "\"fields\": [\"title^3\", \"description^0.4\"], \"fuzziness\": \"AUTO\"}}}\n"
            "```"
        ),
    ),
    _Topic(
        key="mobile",
        title="Driver app offline sync",
        area="work",
        tags=("mobile", "offline", "sync", "react-native"),
        people=("Olu Adeyemi", "Aiko Tanaka", "Chen Wei"),
        meeting="Driver app stand-up",
        facts=(
            "Driver app offline mode: edits are queued in local SQLite and replayed on reconnect; "
            "conflicts resolve last-writer-wins per field, not per record.",
            "Bug MOB-2291: proof-of-delivery photos were uploaded twice when the app resumed from "
            "the "
            "background; Olu traced it to a retry timer that was never cancelled.",
            "Sync payloads are gzip-compressed now; the median sync on 3G dropped from 4.2 s to "
            "1.{n} s.",
            "Aiko's sync banner: grey while queued, amber while retrying, red only after 3 failed "
            "attempts.",
            "Decision: keep the clock-skew tolerance at 120 s; server timestamps win on ties.",
            "Release {version} of the driver app is in staged rollout at {pct}% on Android.",
        ),
        todos=(
            "Test the offline queue with airplane mode on the old Samsung test phone (MOB-2304).",
            "Ask {person} for the crash-free sessions number for release {version}.",
        ),
        asks=(
            "Why would a delivery photo upload twice after the app comes back from background?",
            "Summarise the conflict rules for offline edits so I can send them to Aiko.",
        ),
        tools=(
            ("exec", {"command": "adb logcat -d -s SyncWorker"},
             "D SyncWorker: flushing {n2} queued mutations\n"
             "W SyncWorker: upload 3/{n2} failed: timeout after 30000 ms\n"
             "I SyncWorker: retry scheduled in 8 s (attempt 2)"),
        ),
    ),
    _Topic(
        key="postgres",
        title="Postgres 16 upgrade",
        area="work",
        tags=("postgres", "database", "upgrade", "replication"),
        people=("Tomasz Nowak", "Piet de Wit"),
        meeting="Upgrade rehearsal",
        facts=(
            "Postgres 14 → 16 plan: logical replication to a new cluster, then switch the "
            "pgbouncer "
            "target; expected write downtime under a minute.",
            "Replication lag on the upgrade replica stays under {n} s except during the nightly "
            "vacuum "
            "of `shipment_events` (~{n2} GB).",
            "Sequences are not carried by logical replication: the cutover script must `setval` "
            "every "
            "sequence from the old primary.",
            "{person} benchmarked the new cluster: pgbench TPS +{n2}%, mostly from the new "
            "hardware, "
            "not the version.",
            "Decision: rehearse the cutover twice on staging before the production window on "
            "{date}.",
            "The staging rehearsal took {n2} minutes end to end; the slow part was ANALYZE on the "
            "big "
            "tables, so run `vacuumdb --analyze-in-stages` right after the switch.",
        ),
        todos=(
            "Write the rollback section of the upgrade runbook (OPS-517).",
            "Confirm the maintenance window with {person} and post it in #status.",
        ),
        asks=(
            "How far behind is the upgrade replica right now?",
            "Generate the setval statements for all sequences.",
        ),
        tools=(
            ("exec", {"command": "psql -c 'select slot_name, active, pg_size_pretty("
                      "pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)) as lag "
                      "from pg_replication_slots'"},
             "  slot_name   | active |  lag\n--------------+--------+--------\n"
             " upgrade_pg16 | t      | {n3} kB\n(1 row)"),
        ),
        snippet=(
            "```sql\n"
            "SELECT format('SELECT setval(%L, %s, true);', sequencename, last_value)\n"
            "FROM pg_sequences WHERE last_value IS NOT NULL;\n"
            "```"
        ),
    ),
    _Topic(
        key="incident",
        title="Incident: connection pool exhaustion",
        area="work",
        tags=("incident", "postmortem", "pgbouncer", "outage"),
        people=("Tomasz Nowak", "Lena Vogel", "Grace Kim"),
        meeting="Postmortem review",
        facts=(
            "Incident INC-2026-031: the API returned 503s for 23 minutes after a deploy; pgbouncer "
            "hit "
            "max_client_conn because the new worker image opened a pool per thread.",
            "Timeline: 14:02 deploy, 14:05 first 503 alert, 14:11 rollback started, 14:25 error "
            "rate "
            "back to baseline.",
            "Root cause: the SQLAlchemy engine was created inside the request handler instead of "
            "at "
            "import time, so each worker held {n2} idle connections.",
            "Follow-ups: alert at 80% of max_client_conn, a lint rule against `create_engine` "
            "outside "
            "`db.py`, and a load test of the worker image in CI.",
            "The postmortem review is on {weekday} with {person}; blameless format, Sam writes the "
            "first draft.",
        ),
        todos=(
            "Finish the postmortem draft for INC-2026-031 and send it to {person}.",
            "Add the max_client_conn alert to the pgbouncer dashboard.",
        ),
        asks=(
            "Put together a timeline of yesterday's 503s from the deploy log and the alerts.",
            "Draft the postmortem summary for the pool exhaustion incident.",
        ),
        tools=(
            ("exec", {"command": "kubectl -n api logs deploy/api-worker --since=2h | grep -c "
                      "'QueuePool limit'"},
             "{n3}"),
        ),
    ),
    _Topic(
        key="auth",
        title="Enterprise SSO and sessions",
        area="work",
        tags=("security", "sso", "okta", "auth"),
        people=("Marta Silva", "Grace Kim"),
        meeting="Security review",
        facts=(
            "Okta SAML SSO for enterprise customers: the `groups` attribute maps to Quayside "
            "roles; "
            "unknown groups get read-only access.",
            "Session tokens rotate every 15 minutes; refresh tokens last 14 days and are revoked "
            "on a "
            "password change.",
            "Marta flagged that the admin API still accepts API keys in query strings; SEC-88 "
            "moves "
            "them to the Authorization header.",
            "The external pen test is booked for {date}; scope is the public API and the customer "
            "portal.",
            "Decision: SCIM provisioning is out of scope for Q1; enterprise customers get JIT "
            "provisioning only.",
        ),
        todos=(
            "Rotate the staging signing keys before the pen test (SEC-91).",
            "Send {person} the list of endpoints that still accept query-string keys.",
        ),
        asks=(
            "Which endpoints still accept API keys in the query string?",
            "Explain how our refresh token revocation works, short version.",
        ),
        tools=(
            ("exec", {"command": "rg -n \"request.args.get\\('api_key'\\)\" services/"},
             "services/admin/auth.py:57:    key = request.args.get('api_key')\n"
             "services/exports/views.py:23:    key = request.args.get('api_key')"),
        ),
    ),
    _Topic(
        key="data",
        title="Warehouse and nightly dbt run",
        area="work",
        tags=("data", "dbt", "airflow", "warehouse"),
        people=("Ravi Menon", "Ines Duarte"),
        meeting="Data sync",
        facts=(
            "The nightly dbt run failed {n} times this week on `fct_deliveries`: an upstream "
            "source "
            "started sending timezone-naive timestamps.",
            "Ravi added `not_null` and `accepted_range` tests on delivered_at; failures now page "
            "the "
            "data on-call instead of quietly producing wrong numbers.",
            "The Airflow DAG `warehouse_nightly` takes {n2} minutes end to end; the slowest task "
            "is "
            "the full-table snapshot of `shipments`.",
            "Decision: the `shipments` snapshot becomes incremental with an `updated_at` watermark "
            "(DATA-340).",
            "Finance dashboard numbers differ from billing by {pct}% because refunds are booked on "
            "a "
            "different date; it is documented in the metrics glossary.",
        ),
        todos=(
            "Pair with {person} on the incremental snapshot (DATA-340).",
            "Add delivered_at timezone handling to the source contract doc.",
        ),
        asks=(
            "Why did the nightly dbt run fail again?",
            "Why don't the finance dashboard totals match billing for October?",
        ),
        tools=(
            ("exec", {"command": "dbt test --select fct_deliveries"},
             "Running with dbt=1.8.2\nFound 42 models, 131 data tests\n"
             "Failure in test accepted_range_fct_deliveries_delivered_at "
             "(models/marts/schema.yml)\n"
             "  Got {n2} results, configured to fail if != 0\n"
             "Done. PASS=12 WARN=0 ERROR=1 SKIP=0 TOTAL=13"),
        ),
    ),
    _Topic(
        key="ci",
        title="Flaky CI and build times",
        area="work",
        tags=("ci", "pytest", "flaky-tests", "docker"),
        people=("Piet de Wit", "Grace Kim"),
        meeting="",
        facts=(
            "Flaky test `test_assign_driver_concurrently` fails about 1 in {n2} runs under "
            "pytest-xdist: two workers share the same Redis database index.",
            "Fix: each xdist worker gets its own Redis db through the `worker_id` fixture; zero "
            "failures over 200 runs.",
            "CI on main takes {n2} minutes; a build timestamp baked into an image label was "
            "invalidating the Docker layer cache.",
            "Decision: quarantine flaky tests with `@pytest.mark.flaky` and a ticket, never with "
            "retries in the CI config (CI-57).",
        ),
        todos=(
            "Remove the image label timestamp from the Dockerfile (CI-61).",
            "Ask {person} to bump the runner disk to 100 GB.",
        ),
        asks=(
            "test_assign_driver_concurrently failed again on main, can you dig in?",
            "Why is CI so slow this week?",
        ),
        tools=(
            ("exec", {"command": "pytest tests/dispatch -n 8 --count 50 -x -q"},
             "........F\n=================== FAILURES ===================\n"
             "____ test_assign_driver_concurrently[27-50] ____\n"
             "AssertionError: expected driver d-118 to be assigned once, got 2\n"
             "1 failed, {n3} passed in 38.21s"),
        ),
        snippet=(
            "```python\n"
            "@pytest.fixture\n"
            "def redis_db(worker_id: str) -> Redis:\n"
            "    index = 0 if worker_id == \"master\" else int(worker_id.removeprefix(\"gw\")) + "
            "1\n"
            "    client = Redis(db=index)\n"
            "    client.flushdb()\n"
            "    return client\n"
            "```"
        ),
    ),
    _Topic(
        key="hiring",
        title="Hiring a senior backend engineer",
        area="work",
        tags=("hiring", "interviews", "team"),
        people=("Lena Vogel", "Grace Kim", "Tomasz Nowak"),
        meeting="Hiring debrief",
        facts=(
            "Interviewed {candidate} for the senior backend role: strong on Postgres and queueing, "
            "weaker on testing strategy. Leaning hire.",
            "Hiring rubric: system design 40%, code review exercise 30%, collaboration 30%; "
            "written "
            "feedback within 24 hours.",
            "Lena approved a second backend headcount for Q1; {person} runs the take-home review.",
            "Debrief for {candidate} on {weekday}: two hires, one no-hire (concern about "
            "ownership).",
            "Decision: the live-coding round is replaced by a code review of a real, sanitised PR "
            "from our repo.",
        ),
        todos=(
            "Write feedback for {candidate} today.",
            "Prepare the sanitised PR for the code review round.",
        ),
        asks=(
            "Help me write up interview feedback for {candidate} from my notes.",
            "What's our hiring rubric again?",
        ),
    ),
    _Topic(
        key="planning",
        title="Q1 planning and career",
        area="work",
        tags=("planning", "okr", "career", "management"),
        people=("Lena Vogel", "Jonas Berg"),
        meeting="1:1 with Lena",
        facts=(
            "Q1 OKR draft: cut p99 API latency by 30%, finish the Tidewater cutover, zero Sev-1 "
            "incidents caused by deploys.",
            "Lena wants one page per team for the planning review on {date}; no slides.",
            "Q1 capacity: 5 engineers minus on-call (20%) and hiring (10%), about 3.5 "
            "engineer-quarters of roadmap work.",
            "Jonas pushed for CSV exports for enterprise; agreed to do it only if it fits after "
            "Tidewater.",
            "1:1 with Lena: talked about the staff engineer path; she wants a written technical "
            "strategy for the platform by the end of Q1.",
        ),
        todos=(
            "Draft the one-page Q1 plan for the team before {date}.",
            "Outline the platform technical strategy doc (3 bets, 3 non-goals).",
        ),
        asks=(
            "Help me turn these notes into a one-page Q1 plan.",
            "What did Lena say about the staff engineer path?",
        ),
    ),
    _Topic(
        key="escalation",
        title="Nordhaven Shipping escalation",
        area="work",
        tags=("customer", "escalation", "timezones", "eta"),
        people=("Fatima Zahra", "Jonas Berg"),
        meeting="Escalation call",
        facts=(
            "Escalation from Nordhaven Shipping: ETAs in their dashboard are off by one hour since "
            "the DST change (SUP-1187).",
            "Root cause: the ETA service stored local times without an offset for the Hamburg "
            "terminal.",
            "Fatima wants a customer-facing summary by {weekday}; keep it non-technical.",
            "Fix deployed on {date}; Nordhaven confirmed ETAs look right for {n2} test shipments.",
        ),
        todos=(
            "Send Fatima the customer-facing summary for SUP-1187.",
            "Add a DST test case for every terminal timezone.",
        ),
        asks=(
            "Nordhaven says their ETAs are an hour off. Any idea?",
            "Write the customer-facing summary for the Nordhaven ETA issue.",
        ),
        tools=(
            ("exec", {"command": "psql eta -c \"select terminal, tz from terminals "
                      "where tz is null\""},
             " terminal | tz\n----------+----\n DEHAM    |\n(1 row)"),
        ),
    ),
    _Topic(
        key="oncall",
        title="On-call",
        area="work",
        tags=("on-call", "pager", "ops"),
        people=("Tomasz Nowak", "Piet de Wit", "Grace Kim"),
        meeting="",
        facts=(
            "On call this week until Monday; handoff from {person}: two noisy alerts and one open "
            "incident follow-up.",
            "Paged at 03:12 for disk usage on log-node-3; deleted old indices, resolved at 03:40.",
            "The certificate renewal runbook is out of date; cert-manager handles renewals now "
            "(OPS-530).",
            "Quiet on-call shift: {n} pages, none actionable; filed OPS-544 to tune the flapping "
            "alert.",
        ),
        todos=(
            "Update the certificate runbook (OPS-530).",
            "Hand over on-call to {person} on Monday with notes.",
        ),
        asks=(
            "Write my on-call handoff note for this week.",
        ),
        tools=(
            ("exec", {"command": "df -h /var/log/loki"},
             "Filesystem      Size  Used Avail Use% Mounted on\n/dev/nvme1n1    500G  {n3}G  "
             "57G  89% /var/log/loki"),
        ),
    ),
    _Topic(
        key="talk",
        title="PyCon NL talk",
        area="work",
        tags=("conference", "talk", "idempotency"),
        people=("Grace Kim", "Chen Wei"),
        meeting="",
        facts=(
            "CFP for PyCon NL: talk titled 'Exactly-once is a lie: idempotent webhooks in "
            "practice'; "
            "the deadline is {date}.",
            "Talk outline: why retries happen, idempotency keys, the outbox pattern, testing with "
            "replayed events.",
            "{person} offered to review the slides; practice run at the team lunch on {weekday}.",
        ),
        todos=(
            "Submit the PyCon NL proposal before {date}.",
            "Record a 5-minute dry run of the outbox section.",
        ),
        asks=(
            "Tighten my PyCon NL abstract to under 150 words.",
        ),
    ),
    _Topic(
        key="tooling",
        title="Sam's working preferences",
        area="work",
        tags=("preferences", "tooling", "style"),
        people=("Grace Kim", "Piet de Wit"),
        meeting="",
        facts=(
            "Sam prefers concise answers: the command first, the explanation after.",
            "Python tooling: uv for environments, ruff for lint and format, pytest with a real "
            "Postgres through testcontainers; no mocks for the database.",
            "Commit messages in the imperative mood, with the ticket id (e.g. BILL-{n3}).",
            "Never push to main directly; open a PR even for one-line fixes.",
            "British spelling in docs ('behaviour', 'organise'); American in code identifiers.",
            "Editor: Neovim with LazyVim; terminal: WezTerm; shell: fish.",
            "No notifications after 22:00 unless it is a page.",
        ),
        todos=(
            "Set up the new laptop with the dotfiles repo.",
        ),
        asks=(
            "Remind me what linters this repo uses.",
        ),
    ),
    _Topic(
        key="marathon",
        title="Rotterdam Marathon training",
        area="life",
        tags=("running", "marathon", "training", "health"),
        people=("Coach Miriam",),
        meeting="",
        facts=(
            "Training for the Rotterdam Marathon on 11 April 2027; goal time 3:45, a 5:19 min/km "
            "pace.",
            "Long run on {weekday}: {km} km at {pace} min/km, mostly zone 2; left knee a bit stiff "
            "after 25 km.",
            "Coach Miriam's plan: 4 runs a week: intervals (6 × 800 m), a tempo run, a long run "
            "and "
            "an easy run.",
            "Runs before work at 06:30 along the Maas; Thursday evenings with the running club in "
            "Kralingen.",
            "The physio thinks the knee is IT band related: foam rolling daily and hip strength "
            "work "
            "twice a week.",
            "Second pair of Saucony Endorphin Speed for tempo runs; the old pair has about {n3} "
            "km.",
        ),
        todos=(
            "Book the physio follow-up for the knee.",
            "Buy gels for the 30 km long run.",
        ),
        asks=(
            "How many kilometres did I run this month?",
            "Adjust this week's plan, my knee is sore after the long run.",
        ),
        tools=(
            ("exec", {"command": "gpxkit summary ~/runs/2026-11.gpx"},
             "runs: {n2}  distance: {n3}.4 km  moving time: 19:42:10  avg pace: 5:31 /km  "
             "elevation gain: 212 m"),
        ),
    ),
    _Topic(
        key="lisbon",
        title="Lisbon trip",
        area="life",
        tags=("travel", "lisbon", "family"),
        people=("Marco", "Ada"),
        meeting="",
        facts=(
            "Lisbon trip: flights RTM → LIS booked (Transavia, departs 07:10 on {date}); back on "
            "Sunday evening.",
            "Apartment in Alfama for 3 nights, check-in after 15:00; the host, Joana, texts the "
            "door "
            "code the day before.",
            "Restaurant list: Taberna da Rua das Flores (no reservations, go early), Cervejaria "
            "Ramiro, and a vegetarian place near Príncipe Real.",
            "Sam wants a day trip to Sintra; Pena Palace tickets are timed entry, book online.",
            "Ada's passport has to be renewed before the trip; appointment at the gemeente on "
            "{date}.",
        ),
        todos=(
            "Book Pena Palace tickets for the Saturday.",
            "Renew Ada's passport (bring the old one and a photo).",
        ),
        asks=(
            "Make me a packing list for Lisbon with an 8-year-old.",
            "What restaurants did we shortlist for Lisbon?",
        ),
        tools=(
            ("web_search", {"query": "Pena Palace timed entry tickets"},
             "1. Parques de Sintra – Pena Palace and Park tickets (official)\n"
             "2. Visiting Pena Palace: how timed entry works, arrive 15 minutes early"),
        ),
    ),
    _Topic(
        key="portuguese",
        title="Learning Portuguese",
        area="life",
        tags=("language", "portuguese", "learning"),
        people=("Beatriz",),
        meeting="",
        facts=(
            "Portuguese with Beatriz on Thursdays at 19:00 (italki); working on the pretérito "
            "perfeito.",
            "Duolingo streak: {n3} days.",
            "Phrases to practise: 'a conta, por favor', 'onde fica a estação?', 'sou vegetariana'.",
            "Sam wants European Portuguese material, not Brazilian: the pronunciation is very "
            "different.",
        ),
        todos=(
            "Do the italki homework before Thursday.",
        ),
        asks=(
            "Quiz me on ten European Portuguese phrases for restaurants.",
        ),
    ),
    _Topic(
        key="kitchen",
        title="Kitchen renovation",
        area="life",
        tags=("home", "renovation", "kitchen"),
        people=("Marco",),
        meeting="",
        facts=(
            "Kitchen renovation: Van Dijk Keukens quoted €{amount} including installation; the "
            "IKEA "
            "plan is about 30% cheaper without installation.",
            "The electrician adds a separate group for the induction hob (perilex socket); booked "
            "for {date}.",
            "Chosen: matte green fronts and an oak worktop; Sam dislikes high-gloss finishes.",
            "No permit needed for interior work, but the VvE wants two weeks' notice because of "
            "the "
            "noise.",
        ),
        todos=(
            "Email the VvE about the renovation dates.",
            "Compare the two kitchen quotes line by line.",
        ),
        asks=(
            "Compare the two kitchen quotes for me.",
        ),
    ),
    _Topic(
        key="family",
        title="Family and Ada's school",
        area="life",
        tags=("family", "school", "kids"),
        people=("Marco", "Ada"),
        meeting="",
        facts=(
            "Ada has piano on Wednesdays at 16:30; Sam does pick-up on even weeks, Marco on odd "
            "weeks.",
            "Parent-teacher meeting on {date} at 15:45 with juf Annelies: Ada reads well, needs "
            "practice with the times tables.",
            "Ada's birthday party: 12 kids at the trampoline park on Saturday {date}; the cake "
            "must be "
            "nut-free (Liam is allergic).",
            "School holiday next month; Marco takes the first week off, Sam the second.",
        ),
        todos=(
            "Order the nut-free birthday cake.",
            "Sign Ada up for the swimming diploma B course.",
        ),
        asks=(
            "When is the parent-teacher meeting again?",
            "Help me plan Ada's birthday party timeline.",
        ),
    ),
    _Topic(
        key="cooking",
        title="Cooking",
        area="life",
        tags=("food", "cooking", "vegetarian"),
        people=("Marco",),
        meeting="",
        facts=(
            "Sam is vegetarian (eggs and dairy, no fish), likes spicy food and dislikes coriander.",
            "Sourdough starter 'Bubbles' lives in the fridge; feed it 1:5:5 the night before "
            "baking.",
            "Weeknight favourites: dal with spinach, shakshuka, miso-glazed aubergine, pasta e "
            "ceci.",
            "Batch-cook on Sundays: two curries and a tray of roasted vegetables for the week.",
        ),
        todos=(
            "Buy rye flour for the starter.",
        ),
        asks=(
            "Plan five vegetarian dinners for this week, nothing with coriander.",
        ),
    ),
    _Topic(
        key="reading",
        title="Reading list",
        area="life",
        tags=("books", "reading", "learning"),
        people=("Grace Kim", "Lena Vogel"),
        meeting="",
        facts=(
            "Rereading 'Designing Data-Intensive Applications', chapter 9: linearizability versus "
            "serializability.",
            "Finished 'The Manager's Path'; the chapter on managing managers helped with the staff "
            "engineer conversation.",
            "Book club pick for {month}: 'Tomorrow, and Tomorrow, and Tomorrow'.",
            "{person} recommended 'A Philosophy of Software Design' (Ousterhout).",
        ),
        todos=(
            "Return the library copy of 'Piranesi' by {date}.",
        ),
        asks=(
            "What was that book Grace recommended?",
        ),
    ),
    _Topic(
        key="finance",
        title="Taxes and household admin",
        area="life",
        tags=("finance", "taxes", "admin"),
        people=("Marco",),
        meeting="",
        facts=(
            "Dutch income tax return (aangifte) is due 1 May; the 30% ruling ends in 2027, check "
            "the "
            "effect with the accountant.",
            "Accountant meeting with Mr. Bakker on {date}: bring the annual pension and mortgage "
            "statements.",
            "Car insurance renews in {month}; the current premium is €{n3} a year, compare two "
            "others.",
            "Emergency fund moved to a savings account at 2.1%; the target is six months of "
            "expenses.",
        ),
        todos=(
            "Collect the annual statements for the accountant.",
            "Get two car insurance quotes before the renewal.",
        ),
        asks=(
            "What do I need to bring to the accountant?",
        ),
    ),
    _Topic(
        key="health",
        title="Health appointments",
        area="life",
        tags=("health", "appointments"),
        people=("Marco",),
        meeting="",
        facts=(
            "Dentist: check-up and cleaning with Dr. Hendriks on {date} at 08:30.",
            "Physio for the knee on Tuesdays at 07:45 with Joris; six sessions covered by "
            "insurance.",
            "Sleep is worse during on-call weeks; a wind-down routine without screens after 22:30 "
            "helps.",
        ),
        todos=(
            "Move the dentist appointment, it clashes with the upgrade window.",
        ),
        asks=(
            "When is my next physio session?",
        ),
    ),
    _Topic(
        key="gpxkit",
        title="gpxkit side project",
        area="life",
        tags=("rust", "side-project", "gpx", "open-source"),
        people=("Grace Kim",),
        meeting="",
        facts=(
            "gpxkit, a Rust CLI for GPX files from runs: parses with quick-xml and now computes "
            "splits "
            "and elevation gain.",
            "Issue #{n2}: elevation gain was overcounted on noisy GPS data; a 5-point moving "
            "average "
            "before summing fixes it.",
            "Published gpxkit {version} to crates.io; {n3} downloads in the first week.",
            "Wants to learn async Rust properly; a Strava sync subcommand would be the excuse.",
        ),
        todos=(
            "Answer the issue about Garmin extensions in gpxkit.",
            "Add a `--json` output to `gpxkit summary`.",
        ),
        asks=(
            "Why is gpxkit's elevation gain so much higher than Strava's?",
        ),
        tools=(
            ("exec", {"command": "cargo test -q"},
             "running {n2} tests\n..........................\n"
             "test result: ok. {n2} passed; 0 failed; 0 ignored"),
        ),
        snippet=(
            "```rust\n"
            "fn smoothed(elevations: &[f64]) -> Vec<f64> {\n"
            "    elevations\n"
            "        .windows(5)\n"
            "        .map(|w| w.iter().sum::<f64>() / w.len() as f64)\n"
            "        .collect()\n"
            "}\n"
            "```"
        ),
    ),
)

_TOPIC_BY_KEY = {t.key: t for t in _TOPICS}
_WORK = tuple(t for t in _TOPICS if t.area == "work")
_LIFE = tuple(t for t in _TOPICS if t.area == "life")

_OPENERS = (
    "Found it.", "Short version:", "Here's what I have.", "From your notes and the repo:",
    "Checked.", "Summary:", "Done.", "Here's where it stands.",
)
_CLOSERS = (
    "Want me to add this to today's notes?",
    "I added a reminder to today's todo list: {todo}",
    "Next step I'd suggest: {todo}",
    "Anything else on this?",
    "I'll keep an eye on it and mention it in tomorrow's note.",
    "",
)
_FOLLOW_UPS = (
    "Thanks. Add that to today's notes.",
    "Ok. What's the next step?",
    "Can you make it shorter?",
    "Good, and remind me to follow up on {weekday}.",
    "Perfect, thanks!",
    "Also, what's still open on this?",
)
_LOG_LINES = (
    "Morning sync with {person}; nothing blocking.",
    "Deep work block 09:00–11:30, notifications off.",
    "Lunch walk; idea for the talk: start with a real duplicate-charge story.",
    "Reviewed two PRs from {person}.",
    "Cleared the inbox; three threads need an answer tomorrow.",
    "Sam asked me to keep replies shorter today.",
)
_LESSONS = (
    "Check the notes from the last two days before asking Sam something that was already answered.",
    "When a fact changes (dates, owners), update MEMORY.md, don't just append a new line.",
    "Sam prefers one clear recommendation over a list of options.",
    "Don't schedule anything on Wednesday 16:00–17:30 (piano pick-up on even weeks).",
    "Incidents: write the timeline while it is fresh; Sam drafts postmortems from it.",
    "For any Stripe or billing change, ask whether the handler is idempotent.",
)

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)

_AGENTS_MD = """# AGENTS.md — how this workspace works

This folder is home. Treat it that way.

## Every session
1. Read `SOUL.md` (who you are) and `USER.md` (who you're helping).
2. Read `memory/` for today and yesterday.
3. In the main session with Sam, also read `MEMORY.md`.

## Memory
- **Daily notes**: `memory/YYYY-MM-DD.md`, raw log of what happened.
- **Long-term**: `MEMORY.md`, curated: decisions, preferences, people, lessons.
- If you want to remember something, write it to a file. Mental notes don't survive a restart.

## Safety
- Don't run destructive commands without asking. `trash` beats `rm`.
- Never send email or messages on Sam's behalf without a yes.
- Private things stay private, including in group chats.

## Heartbeats
- Check the calendar and the inbox two or three times a day, quietly.
- Stay silent between 22:00 and 07:00 unless it is urgent.
"""

_SOUL_MD = """# SOUL.md — who you are

You are Wren, Sam's assistant. Not a chatbot: a colleague with a good memory.

- Be genuinely helpful, not performatively helpful. Skip the filler.
- Have opinions. Recommend one thing and say why.
- Be resourceful before asking: read the notes, check the repo, then ask.
- Earn trust through competence. Be careful with anything that leaves the machine.
- Concise by default, thorough when it matters.
"""

_USER_MD = """# USER.md — about your human

- **Name:** Sam Okafor
- **What to call them:** Sam
- **Pronouns:** she/her
- **Timezone:** Europe/Amsterdam
- **Work:** tech lead, backend platform team at Quayside (logistics SaaS, Rotterdam)
- **Family:** partner Marco, daughter Ada (8)

## Context
Sam runs the billing migration (Tidewater), cares a lot about reliability and about not
being paged at night. Training for the Rotterdam Marathon in April. Learning Portuguese
for a family trip to Lisbon.

## Preferences
- Command first, explanation after. No walls of text.
- Vegetarian; dislikes coriander.
- No notifications after 22:00 unless it's a page.
"""


# ---------------------------------------------------------------------------------------------
# Small helpers: filling templates, timestamps, ids, files.
# ---------------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")


def _make_value(name: str, rng: Random, topic: _Topic, when: datetime) -> str | None:
    """One placeholder value, or None for a name that is not a placeholder."""
    if name == "person":
        return rng.choice(topic.people if topic.people else _COLLEAGUES)
    if name == "n":
        return str(rng.randint(2, 9))
    if name == "n2":
        return str(rng.randint(11, 60))
    if name == "n3":
        return str(rng.randint(120, 900))
    if name == "ms":
        return str(rng.randint(140, 480))
    if name == "pct":
        return f"{rng.uniform(0.4, 12.0):.1f}"
    if name == "date":
        day = when + timedelta(days=rng.randint(2, 30))
        return f"{day.day} {_MONTHS[day.month - 1][:3]}"
    if name == "weekday":
        return rng.choice(_WEEKDAYS)
    if name == "month":
        return _MONTHS[(when.month + rng.randint(0, 2)) % 12]
    if name == "km":
        return str(rng.randint(8, 32))
    if name == "pace":
        return f"{rng.randint(5, 6)}:{rng.randint(0, 59):02d}"
    if name == "amount":
        return f"{rng.randint(9, 24)}.{rng.choice(('000', '250', '500', '750'))}"
    if name == "candidate":
        return rng.choice(_CANDIDATES)
    if name == "hex":
        return f"{rng.getrandbits(48):012x}"
    if name == "version":
        return f"{rng.randint(0, 3)}.{rng.randint(1, 19)}.{rng.randint(0, 9)}"
    if name == "todo":
        return _pick(rng, topic, when, topic.todos) if topic.todos else ""
    return None


def _fill(rng: Random, topic: _Topic, when: datetime, template: str) -> str:
    """Fill the placeholders of one template; a name repeated in it gets the same value."""
    values: dict[str, str] = {}

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            value = _make_value(name, rng, topic, when)
            if value is None:
                return match.group(0)
            values[name] = value
        return values[name]

    return _PLACEHOLDER.sub(substitute, template)


class _Gen(Random):
    """A Random that also deals templates like cards, so text repeats only once a pool runs out."""

    def __init__(self, seed: str) -> None:
        super().__init__(seed)
        self._decks: dict[tuple[str, tuple[str, ...]], list[str]] = {}
        self._last: dict[tuple[str, tuple[str, ...]], str] = {}

    def deal(self, key: str, pool: Sequence[str]) -> str:
        """The next template of pool, reshuffled each time it is used up."""
        deck_key = (key, tuple(pool))
        left = self._decks.get(deck_key)
        if not left:
            left = list(pool)
            self.shuffle(left)
            if len(left) > 1 and left[-1] == self._last.get(deck_key):
                # Never deal the same card twice in a row across a reshuffle.
                left[0], left[-1] = left[-1], left[0]
            self._decks[deck_key] = left
        card = left.pop()
        self._last[deck_key] = card
        return card


def _pick(rng: Random, topic: _Topic, when: datetime, pool: Sequence[str]) -> str:
    """A template from pool (dealt without repeats when rng can), filled."""
    template = rng.deal(topic.key, pool) if isinstance(rng, _Gen) else rng.choice(pool)
    return _fill(rng, topic, when, template)


def _uuid(rng: Random) -> str:
    """A version-4 uuid drawn from rng."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _hex(rng: Random, chars: int) -> str:
    """A random lowercase hex id of the given length."""
    return f"{rng.getrandbits(chars * 4):0{chars}x}"


def _iso_js(moment: datetime) -> str:
    """JavaScript-style UTC timestamp with milliseconds: 2026-11-01T07:00:00.000Z."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _iso_naive(moment: datetime) -> str:
    """Python-style local timestamp without zone, seconds precision."""
    return moment.replace(tzinfo=None).isoformat(timespec="seconds")


def _iso_sql(moment: datetime) -> str:
    """SQLite-style timestamp: 2026-11-01 07:00:00."""
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _epoch_ms(moment: datetime) -> int:
    """Milliseconds since the Unix epoch, exactly."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _timeline(rng: Random, count: int) -> list[datetime]:
    """count working days going forward from BASE_DATE, with the odd gap."""
    days: list[datetime] = []
    day = BASE_DATE
    for _ in range(count):
        days.append(day)
        day += timedelta(days=rng.choice((1, 1, 1, 2)))
    return days


def _at(rng: Random, day: datetime, start_hour: int = 7, end_hour: int = 22) -> datetime:
    """A random moment (to the millisecond) on the given day."""
    offset = rng.randint(start_hour * 3600, end_hour * 3600) * 1000 + rng.randint(0, 999)
    return day.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(milliseconds=offset)


def _dump_json(data: Any) -> str:
    """Pretty JSON the way these tools write it: indent 2, UTF-8 kept, trailing newline."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _jsonl_line(data: Any) -> str:
    """One compact JSON line, the way a Node.js agent appends to a transcript."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n"


def _write(path: Path, text: str) -> None:
    """Write text as UTF-8 with \\n line endings on every platform."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))


def _unit_vector(rng: Random, base: Sequence[float], noise: float) -> list[float]:
    """base plus rng noise of about length `noise`, normalised: one topic's memories cluster."""
    dim = len(base)
    raw = rng.getrandbits(8 * dim).to_bytes(dim, "little")
    jitter = struct.unpack(f"<{dim}b", raw)
    # A uniform byte in [-1, 1) has variance 1/3, so this scale gives the noise a norm of ~`noise`.
    step = noise / (128.0 * math.sqrt(dim / 3.0))
    vec = [b + step * j for b, j in zip(base, jitter)]
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def _topic_bases(seed_text: str, dim: int) -> dict[str, list[float]]:
    """One fixed random direction per topic, the centre of that topic's embeddings."""
    bases: dict[str, list[float]] = {}
    for topic in _TOPICS:
        rng = Random(f"{seed_text}:{topic.key}:{dim}")
        vec = [rng.gauss(0.0, 1.0) for _ in range(dim)]
        norm = math.sqrt(sum(v * v for v in vec))
        bases[topic.key] = [v / norm for v in vec]
    return bases


def _memory_kind(fact: str) -> str:
    """The kind of a memory, guessed from its wording."""
    if fact.startswith("Decision:"):
        return "decision"
    if fact.startswith("Sam ") and ("prefer" in fact or "dislike" in fact or "want" in fact):
        return "preference"
    return "fact"


# ---------------------------------------------------------------------------------------------
# OpenClaw: markdown workspace, JSONL transcripts, sessions index, SQLite memory with FTS5.
# ---------------------------------------------------------------------------------------------


def _daily_note(rng: Random, day: datetime, work: list[_Topic], life: list[_Topic]) -> str:
    """One memory/YYYY-MM-DD.md: what happened that day, in headings and bullets."""
    weekend = day.weekday() >= 5
    if weekend:
        # Weekends are about life; work only shows up as the odd stray thought.
        work = work[:1] if rng.random() < 0.3 else []
        extra = rng.choice(_LIFE)
        life = life if extra in life else life + [extra]
    lines = [f"# {day:%Y-%m-%d} ({day:%A})", ""]
    if work:
        lines.append("## Work")
        for topic in work:
            for _ in range(1 if weekend else rng.randint(1, 2)):
                lines.append(f"- **{topic.title}**: {_pick(rng, topic, day, topic.facts)}")
        lines.append("")
    meeting_topics = [t for t in work if t.meeting]
    if meeting_topics and not weekend and rng.random() < 0.6:
        topic = rng.choice(meeting_topics)
        person = rng.choice(topic.people)
        hour = rng.randint(9, 16)
        lines.append("## Meetings")
        lines.append(f"### {topic.meeting} ({hour:02d}:{rng.choice((0, 30)):02d}, with {person})")
        lines.append(f"- {_pick(rng, topic, day, topic.facts)}")
        if topic.todos:
            owner = rng.choice(("Sam", person))
            lines.append(f"- Action ({owner}): {_pick(rng, topic, day, topic.todos)}")
        lines.append("")
    if life and (weekend or rng.random() < 0.8):
        lines.append("## Personal")
        for topic in life:
            for _ in range(rng.randint(1, 2) if weekend else 1):
                lines.append(f"- {_pick(rng, topic, day, topic.facts)}")
        lines.append("")
    snippet_topics = [t for t in work + life if t.snippet]
    if snippet_topics and rng.random() < 0.2:
        topic = rng.choice(snippet_topics)
        lines.append(f"## Snippet: {topic.title}")
        lines.append(topic.snippet)
        lines.append("")
    lines.append("## Todo")
    for topic in rng.sample(work + life, k=min(3, len(work + life))):
        if topic.todos:
            box = "x" if rng.random() < 0.4 else " "
            lines.append(f"- [{box}] {_pick(rng, topic, day, topic.todos)}")
    lines.append("")
    if work and not weekend and rng.random() < 0.5:
        lines.append("## Log")
        times = sorted(rng.randint(8 * 60, 19 * 60) for _ in range(rng.randint(1, 3)))
        for minute in times:
            topic = rng.choice(work)
            entry = _pick(rng, topic, day, _LOG_LINES)
            lines.append(f"- {minute // 60:02d}:{minute % 60:02d} {entry}")
        lines.append("")
    return "\n".join(lines)


def _memory_md(rng: Random, decisions: list[tuple[datetime, str]]) -> str:
    """MEMORY.md: curated long-term memory with people, projects, decisions, lessons."""
    lines = ["# MEMORY.md — long-term memory", "",
             "_Curated by Wren. Daily detail lives in `memory/`; this file keeps what lasts._", ""]
    lines.append("## About Sam")
    tooling = _TOPIC_BY_KEY["tooling"]
    for fact in tooling.facts:
        lines.append(f"- {_fill(rng, tooling, BASE_DATE, fact)}")
    lines.append("")
    lines.append("## People")
    for name, role in PEOPLE.items():
        lines.append(f"- **{name}**: {role}")
    lines.append("")
    lines.append("## Projects")
    for topic in _WORK:
        if topic.key == "tooling":
            continue
        lines.append(f"### {topic.title}")
        for fact in topic.facts[:2]:
            lines.append(f"- {_fill(rng, topic, BASE_DATE, fact)}")
        lines.append("")
    lines.append("## Life")
    for topic in _LIFE:
        lines.append(f"- **{topic.title}**: {_fill(rng, topic, BASE_DATE, topic.facts[0])}")
    lines.append("")
    lines.append("## Decisions")
    for when, text in decisions:
        lines.append(f"- {when:%Y-%m-%d}: {text.removeprefix('Decision: ')}")
    lines.append("")
    lines.append("## Lessons")
    for lesson in _LESSONS:
        lines.append(f"- {lesson}")
    lines.append("")
    return "\n".join(lines)


def _answer(rng: Random, topic: _Topic, when: datetime) -> str:
    """An assistant reply that draws on the topic's facts."""
    facts = [_pick(rng, topic, when, topic.facts) for _ in range(rng.randint(1, 3))]
    opener = rng.choice(_OPENERS)
    if len(facts) > 1 and rng.random() < 0.5:
        body = opener + "\n\n" + "\n".join(f"- {f}" for f in facts)
    else:
        body = opener + " " + " ".join(facts)
    if topic.snippet and rng.random() < 0.3:
        body += "\n\n" + topic.snippet
    closer = _pick(rng, topic, when, _CLOSERS)
    return body + ("\n\n" + closer if closer else "")


class _Transcript:
    """Builds one OpenClaw session transcript: a header then a chain of message nodes."""

    def __init__(self, rng: Random, session_id: str, start: datetime, model: str) -> None:
        self.rng = rng
        self.now = start
        self.model = model
        self.last_id: str | None = None
        self.lines: list[str] = []
        self.tokens_in = 0
        self.tokens_out = 0
        self.lines.append(_jsonl_line({
            "type": "session", "version": 3, "id": session_id, "timestamp": _iso_js(start),
            "cwd": _WORKSPACE,
        }))
        self._node({"type": "model_change", "provider": "anthropic", "modelId": model})

    def _node(self, body: dict[str, Any]) -> None:
        node_id = _hex(self.rng, 8)
        self.now += timedelta(milliseconds=self.rng.randint(1500, 90_000))
        entry = {"type": body.pop("type"), "id": node_id, "parentId": self.last_id,
                 "timestamp": _iso_js(self.now)}
        entry.update(body)
        self.lines.append(_jsonl_line(entry))
        self.last_id = node_id

    def user(self, text: str) -> None:
        self._node({"type": "message", "message": {
            "role": "user", "content": [{"type": "text", "text": text}],
            "timestamp": _epoch_ms(self.now)}})

    def assistant(self, text: str) -> None:
        self._assistant([{"type": "text", "text": text}], "stop")

    def call(self, text: str, name: str, arguments: dict[str, str]) -> str:
        call_id = "toolu_01" + _hex(self.rng, 22)
        content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
        content.append({"type": "toolCall", "id": call_id, "name": name, "arguments": arguments})
        self._assistant(content, "toolUse")
        return call_id

    def _assistant(self, content: list[dict[str, Any]], stop_reason: str) -> None:
        tokens_in = self.rng.randint(2_000, 40_000)
        tokens_out = self.rng.randint(40, 900)
        self.tokens_in += tokens_in
        self.tokens_out += tokens_out
        cost = round(tokens_in * 5e-6 + tokens_out * 25e-6, 6)
        self._node({"type": "message", "message": {
            "role": "assistant", "content": content, "api": "anthropic-messages",
            "provider": "anthropic", "model": self.model,
            "usage": {"input": tokens_in, "output": tokens_out, "cacheRead": 0, "cacheWrite": 0,
                      "totalTokens": tokens_in + tokens_out, "cost": {"total": cost}},
            "stopReason": stop_reason,
            "timestamp": _epoch_ms(self.now)}})

    def tool_result(self, call_id: str, name: str, output: str) -> None:
        self._node({"type": "message", "message": {
            "role": "toolResult", "toolCallId": call_id, "toolName": name,
            "content": [{"type": "text", "text": output}], "isError": False,
            "timestamp": _epoch_ms(self.now)}})


def _session(rng: Random, session_id: str, day: datetime, topic: _Topic,
             notes: list[str]) -> tuple[str, _Transcript]:
    """One session about topic: the user asks, the agent uses tools and answers, a few turns."""
    model = rng.choice(("claude-opus-4-5", "claude-opus-4-5", "claude-sonnet-4-5"))
    start = _at(rng, day, 7, 21)
    t = _Transcript(rng, session_id, start, model)
    for turn in range(rng.randint(2, 4)):
        ask_pool = topic.asks if turn == 0 else _FOLLOW_UPS + topic.asks
        t.user(_pick(rng, topic, day, ask_pool))
        if rng.random() < 0.5 and notes:
            query = " ".join(rng.sample(topic.tags, k=min(2, len(topic.tags))))
            call_id = t.call("", "memory_search", {"query": query, "maxResults": "5"})
            hits = []
            for note in rng.sample(notes, k=min(2, len(notes))):
                hits.append(f"{note}#L{rng.randint(3, 30)} (score 0.{rng.randint(55, 92)})\n"
                            f"  {_pick(rng, topic, day, topic.facts)}")
            t.tool_result(call_id, "memory_search", "\n".join(hits))
        if topic.tools and rng.random() < 0.7:
            name, args, output = rng.choice(topic.tools)
            filled = {k: _fill(rng, topic, day, v) for k, v in args.items()}
            lead = rng.choice(("Let me check.", "Checking.", "One moment, looking at it.", ""))
            call_id = t.call(lead, name, filled)
            t.tool_result(call_id, name, _fill(rng, topic, day, output))
        t.assistant(_answer(rng, topic, day))
        if topic.todos and rng.random() < 0.3:
            todo = _pick(rng, topic, day, topic.todos)
            note = f"memory/{day:%Y-%m-%d}.md"
            call_id = t.call("Adding it to today's notes.", "edit", {
                "path": note, "oldText": "## Todo\n", "newText": f"## Todo\n- [ ] {todo}\n"})
            t.tool_result(call_id, "edit", f"Successfully replaced text in {note}.")
            t.assistant(f"Noted in memory/{day:%Y-%m-%d}.md: {todo}")
    return model, t


_OPENCLAW_SCHEMA = """
CREATE TABLE scenes (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    summary TEXT,
    started_at TEXT NOT NULL,
    ended_at TEXT
);
CREATE TABLE memory_cells (
    id INTEGER PRIMARY KEY,
    scene_id INTEGER REFERENCES scenes(id),
    kind TEXT NOT NULL,
    content TEXT NOT NULL,
    importance REAL NOT NULL DEFAULT 0.5,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX idx_memory_cells_scene ON memory_cells(scene_id);
CREATE INDEX idx_memory_cells_kind ON memory_cells(kind);
CREATE VIRTUAL TABLE memory_cells_fts USING fts5(
    content, content='memory_cells', content_rowid='id'
);
CREATE TRIGGER memory_cells_ai AFTER INSERT ON memory_cells BEGIN
    INSERT INTO memory_cells_fts(rowid, content) VALUES (new.id, new.content);
END;
CREATE TRIGGER memory_cells_ad AFTER DELETE ON memory_cells BEGIN
    INSERT INTO memory_cells_fts(memory_cells_fts, rowid, content)
        VALUES ('delete', old.id, old.content);
END;
CREATE TRIGGER memory_cells_au AFTER UPDATE ON memory_cells BEGIN
    INSERT INTO memory_cells_fts(memory_cells_fts, rowid, content)
        VALUES ('delete', old.id, old.content);
    INSERT INTO memory_cells_fts(rowid, content) VALUES (new.id, new.content);
END;
PRAGMA user_version = 3;
"""


def _openclaw_db(path: Path, rng: Random, scale: int, days: list[datetime]) -> None:
    """memory.db: scenes and memory cells with an FTS5 index, rollback-journal mode."""
    import apsw

    scenes: list[tuple[int, str, str, str, str]] = []
    cells: list[tuple[int, int, str, str, float, str, str]] = []
    for scene_id in range(1, 5 * scale + 1):
        topic = rng.choice(_TOPICS)
        day = days[(scene_id - 1) * len(days) // (5 * scale)]
        start = _at(rng, day, 7, 20)
        end = start + timedelta(minutes=rng.randint(5, 90))
        summary = " ".join(_pick(rng, topic, day, topic.facts) for _ in range(2))
        scenes.append((scene_id, topic.title, summary, _iso_js(start), _iso_js(end)))
        created = start
        for _ in range(6):
            if topic.todos and rng.random() < 0.15:
                fact, kind = _pick(rng, topic, day, topic.todos), "todo"
            else:
                fact = _pick(rng, topic, day, topic.facts)
                kind = _memory_kind(fact)
            created += timedelta(seconds=rng.randint(20, 600))
            updated = created + timedelta(days=rng.choice((0, 0, 0, 1, 3)))
            low, high = (0.5, 1.0) if kind == "decision" else (0.1, 0.9)
            importance = round(rng.uniform(low, high), 3)
            cells.append((len(cells) + 1, scene_id, kind, fact, importance,
                          _iso_js(created), _iso_js(updated)))
    con = apsw.Connection(str(path))
    try:
        con.execute("PRAGMA journal_mode=DELETE")
        with con:
            con.execute(_OPENCLAW_SCHEMA)
            con.executemany("INSERT INTO scenes VALUES (?, ?, ?, ?, ?)", scenes)
            con.executemany("INSERT INTO memory_cells VALUES (?, ?, ?, ?, ?, ?, ?)", cells)
    finally:
        con.close()


def _write_openclaw(root: Path, rng: Random, scale: int) -> int:
    """An OpenClaw workspace; returns the number of files written."""
    written = 0
    for name, text in (("AGENTS.md", _AGENTS_MD), ("SOUL.md", _SOUL_MD), ("USER.md", _USER_MD)):
        _write(root / name, text)
        written += 1

    days = _timeline(rng, 8 * scale)
    work = rng.sample(_WORK, k=3)
    life = rng.sample(_LIFE, k=2)
    decisions: list[tuple[datetime, str]] = []
    decided: set[str] = set()
    notes: list[str] = []
    for day in days:
        # Focus drifts: most days continue yesterday's work, some switch one topic.
        if rng.random() < 0.4:
            work[rng.randrange(len(work))] = rng.choice([t for t in _WORK if t not in work])
        if rng.random() < 0.5:
            life[rng.randrange(len(life))] = rng.choice([t for t in _LIFE if t not in life])
        name = f"memory/{day:%Y-%m-%d}.md"
        _write(root / name, _daily_note(rng, day, list(work), list(life)))
        notes.append(name)
        written += 1
        # MEMORY.md is curated: each decision is recorded once, on a day its topic was active.
        choices = [(t, f) for t in work for f in t.facts
                   if f.startswith("Decision:") and f not in decided]
        if choices and (rng.random() < 0.5 or len(decisions) < 4):
            topic, fact = rng.choice(choices)
            decided.add(fact)
            decisions.append((day, _fill(rng, topic, day, fact)))

    _write(root / "MEMORY.md", _memory_md(rng, decisions))
    written += 1

    index: dict[str, dict[str, Any]] = {}
    session_days = sorted(rng.sample(range(len(days)), k=4 * scale))
    channels = ("telegram", "webchat", "discord", "cli")
    for number, day_index in enumerate(session_days):
        day = days[day_index]
        session_id = _uuid(rng)
        topic = rng.choice(_TOPICS)
        recent = notes[max(0, day_index - 3):day_index + 1]
        model, transcript = _session(rng, session_id, day, topic, recent)
        _write(root / "agents/main/sessions" / f"{session_id}.jsonl", "".join(transcript.lines))
        written += 1
        channel = "main" if number == len(session_days) - 1 else rng.choice(channels)
        key = ("agent:main:main" if channel == "main"
               else f"agent:main:{channel}:dm:{session_id[:8]}")
        index[key] = {
            "sessionId": session_id,
            "updatedAt": _epoch_ms(transcript.now),
            "chatType": "direct",
            "channel": "webchat" if channel == "main" else channel,
            "label": topic.title,
            "model": model,
            "modelProvider": "anthropic",
            "inputTokens": transcript.tokens_in,
            "outputTokens": transcript.tokens_out,
            "totalTokens": transcript.tokens_in + transcript.tokens_out,
            "sessionFile": f"{session_id}.jsonl",
        }
    _write(root / "agents/main/sessions/sessions.json", _dump_json(index))
    written += 1

    _openclaw_db(root / "memory.db", rng, scale, days)
    return written + 1


# ---------------------------------------------------------------------------------------------
# rAgent: pretty-printed JSON memory files.
# ---------------------------------------------------------------------------------------------


def _ragent_entry(rng: Random, when: datetime) -> dict[str, Any]:
    """One {"id", "timestamp", "content", "tags", "importance"} memory entry."""
    topic = rng.choice(_TOPICS)
    fact = _pick(rng, topic, when, topic.facts)
    kind = _memory_kind(fact)
    low, high = (0.6, 1.0) if kind == "decision" else (0.1, 0.9)
    return {
        "id": _uuid(rng),
        "timestamp": _iso_naive(when),
        "content": fact,
        "tags": sorted(rng.sample(topic.tags, k=min(2, len(topic.tags)))) + [kind],
        "importance": round(rng.uniform(low, high), 2),
        "source": rng.choice(("conversation", "conversation", "reflection", "tool")),
    }


def _ragent_conversation(rng: Random, when: datetime, model: str) -> dict[str, Any]:
    """One remembered exchange with a given model."""
    topic = rng.choice([t for t in _TOPICS if t.asks])
    return {
        "id": _uuid(rng),
        "timestamp": _iso_naive(when),
        "model": model,
        "conversation_id": _hex(rng, 12),
        "prompt": _pick(rng, topic, when, topic.asks),
        "response": _answer(rng, topic, when),
        "tags": list(topic.tags[:2]),
        "importance": round(rng.uniform(0.2, 0.95), 2),
    }


def _moments(rng: Random, count: int, days_per_item: float) -> list[datetime]:
    """count increasing moments from BASE_DATE, about days_per_item apart, in waking hours."""
    moments = []
    elapsed = 0.0  # in days; the fraction maps onto 07:00-23:00 so the order is kept
    start = BASE_DATE.replace(hour=0)
    for _ in range(count):
        elapsed += rng.uniform(0.01, 2 * days_per_item)
        day = math.floor(elapsed)
        seconds = int((elapsed - day) * 16 * 3600)
        moments.append(start + timedelta(days=day, hours=7, seconds=seconds))
    return moments


def _write_ragent(root: Path, rng: Random, scale: int) -> int:
    """rAgent-style JSON memory files; returns the number of files written."""
    memories = [_ragent_entry(rng, m) for m in _moments(rng, 12 * scale, 0.7)]
    _write(root / "memory.json", _dump_json(memories))

    for filename, model in (("claude_opus_memories.json", "claude-opus-4"),
                            ("gpt4o_memories.json", "gpt-4o")):
        entries = [_ragent_conversation(rng, m, model) for m in _moments(rng, 8 * scale, 1.0)]
        _write(root / filename, _dump_json(entries))

    contexts: dict[str, dict[str, Any]] = {}
    for number, moment in enumerate(_moments(rng, 5 * scale, 1.6), start=1):
        topic = rng.choice(_TOPICS)
        facts = [_fill(rng, topic, moment, f)
                 for f in rng.sample(topic.facts, k=min(len(topic.facts), 3))]
        contexts[f"ctx_{number:04d}"] = {
            "title": topic.title,
            "created": _iso_naive(moment),
            "updated": _iso_naive(moment + timedelta(hours=rng.randint(1, 72))),
            "content": " ".join(facts),
            "related_memories": [m["id"] for m in rng.sample(memories, k=min(2, len(memories)))],
            "tags": list(topic.tags),
        }
    _write(root / "extendedcontext.json", _dump_json(contexts))

    observations = []
    for moment in _moments(rng, 3 * scale, 2.5):
        topic = rng.choice(_TOPICS)
        observations.append({"timestamp": _iso_naive(moment),
                             "content": _pick(rng, topic, moment, topic.facts),
                             "confidence": round(rng.uniform(0.5, 0.99), 2)})
    profile = {
        "name": USER_NAME,
        "preferred_name": "Sam",
        "pronouns": "she/her",
        "timezone": "Europe/Amsterdam",
        "location": "Rotterdam, NL",
        "work": {"company": "Quayside", "role": "Tech lead, backend platform",
                 "projects": [t.title for t in _WORK if t.key not in ("tooling", "oncall")]},
        "preferences": {
            "communication": ["command first, explanation after", "one clear recommendation",
                              "British spelling in docs"],
            "tooling": ["uv", "ruff", "pytest", "Neovim (LazyVim)", "WezTerm", "fish"],
            "food": ["vegetarian", "spicy", "no coriander"],
            "quiet_hours": "22:00-07:00",
        },
        "people": dict(PEOPLE),
        "routines": ["06:30 run along the Maas", "Monday 11:00 1:1 with Lena",
                     "Wednesday 16:30 Ada's piano (even weeks)", "Thursday 19:00 Portuguese"],
        "observations": observations,
        "updated_at": observations[-1]["timestamp"],
    }
    _write(root / "user_profile.json", _dump_json(profile))

    summaries = []
    for moment in _moments(rng, 4 * scale, 1.8):
        topics = rng.sample(_TOPICS, k=2)
        first, second = topics
        summaries.append({
            "id": _uuid(rng),
            "session_start": _iso_naive(moment),
            "session_end": _iso_naive(moment + timedelta(minutes=rng.randint(4, 75))),
            "model": rng.choice(("claude-opus-4", "gpt-4o")),
            "summary": (f"Sam asked: {_pick(rng, first, moment, first.asks or first.facts)} "
                        f"Covered: {_pick(rng, first, moment, first.facts)} "
                        f"Also discussed {second.title}: "
                        f"{_pick(rng, second, moment, second.facts)}"),
            "topics": [t.key for t in topics],
            "message_count": rng.randint(4, 40),
        })
    _write(root / "conversation_summaries.json", _dump_json(summaries))
    return 6


# ---------------------------------------------------------------------------------------------
# Memento: one SQLite database in WAL mode with float32 embeddings.
# ---------------------------------------------------------------------------------------------

_MEMENTO_SCHEMA = """
CREATE TABLE memories (
    id INTEGER PRIMARY KEY,
    content TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    embedding BLOB
);
CREATE INDEX idx_memories_created_at ON memories(created_at);
CREATE TABLE embedding_cache (
    text_hash TEXT PRIMARY KEY,
    embedding BLOB NOT NULL,
    model TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE entities (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    entity_type TEXT NOT NULL,
    observations TEXT NOT NULL DEFAULT '[]',
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE relations (
    id INTEGER PRIMARY KEY,
    from_entity TEXT NOT NULL REFERENCES entities(name),
    to_entity TEXT NOT NULL REFERENCES entities(name),
    relation_type TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (from_entity, to_entity, relation_type)
);
PRAGMA user_version = 2;
"""

_EMBED_MODEL = "all-MiniLM-L6-v2"


def _write_memento(root: Path, rng: Random, scale: int) -> int:
    """memory.db in WAL mode, checkpointed so no -wal/-shm files remain; returns 1."""
    import apsw

    bases = _topic_bases("memento", _MEMENTO_DIM)
    pack = struct.Struct(f"<{_MEMENTO_DIM}f").pack
    memories: list[tuple[int, str, str, str, bytes]] = []
    cache: list[tuple[str, bytes, str, str]] = []
    for number, moment in enumerate(_moments(rng, 40 * scale, 0.2), start=1):
        topic = rng.choice(_TOPICS)
        if topic.todos and rng.random() < 0.2:
            content, kind = _pick(rng, topic, moment, topic.todos), "task"
        else:
            content = _pick(rng, topic, moment, topic.facts)
            kind = _memory_kind(content)
        metadata = {
            "type": kind,
            "topic": topic.key,
            "tags": list(topic.tags[:3]),
            "source": rng.choice(("conversation", "conversation", "tool", "import")),
            "importance": round(rng.uniform(0.1, 1.0), 2),
        }
        vector = pack(*_unit_vector(rng, bases[topic.key], 1.0))
        created = _iso_sql(moment)
        memories.append((number, content, json.dumps(metadata, sort_keys=True), created, vector))
        if number % 4 == 1:
            digest = hashlib.sha256(content.encode("utf-8")).hexdigest()
            cache.append((digest, vector, _EMBED_MODEL, created))

    entities: list[tuple[int, str, str, str, str]] = [
        (1, USER_NAME, "person", json.dumps(["Tech lead at Quayside", "Lives in Rotterdam"]),
         _iso_sql(BASE_DATE))]
    for name, role in PEOPLE.items():
        entities.append((len(entities) + 1, name, "person", json.dumps([role]),
                         _iso_sql(BASE_DATE)))
    for topic in _TOPICS:
        first_fact = _fill(rng, topic, BASE_DATE, topic.facts[0])
        entities.append((len(entities) + 1, topic.title,
                         "project" if topic.area == "work" else "topic",
                         json.dumps([first_fact], ensure_ascii=False), _iso_sql(BASE_DATE)))
    relations: list[tuple[int, str, str, str, str]] = []
    for topic in _TOPICS:
        relation = "works_on" if topic.area == "work" else "cares_about"
        relations.append((len(relations) + 1, USER_NAME, topic.title, relation,
                          _iso_sql(BASE_DATE)))
        for person in topic.people:
            relations.append((len(relations) + 1, person, topic.title, "involved_in",
                              _iso_sql(BASE_DATE)))

    path = root / "memory.db"
    root.mkdir(parents=True, exist_ok=True)
    con = apsw.Connection(str(path))
    try:
        con.execute("PRAGMA journal_mode=WAL")
        with con:
            con.execute(_MEMENTO_SCHEMA)
            con.executemany("INSERT INTO memories VALUES (?, ?, ?, ?, ?)", memories)
            con.executemany("INSERT OR IGNORE INTO embedding_cache VALUES (?, ?, ?, ?)", cache)
            con.executemany("INSERT INTO entities VALUES (?, ?, ?, ?, ?)", entities)
            con.executemany("INSERT INTO relations VALUES (?, ?, ?, ?, ?)", relations)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()
    return 1


# ---------------------------------------------------------------------------------------------
# Synthians: one JSON file per memory, assemblies, and an index.
# ---------------------------------------------------------------------------------------------


def _write_synthians(root: Path, rng: Random, scale: int) -> int:
    """A Synthians-style memory store; returns the number of files written."""
    bases = _topic_bases("synthians", _SYNTHIANS_DIM)
    by_topic: dict[str, list[str]] = {}
    records: list[dict[str, Any]] = []
    topic = rng.choice(_TOPICS)
    for moment in _moments(rng, 20 * scale, 0.3):
        # Memories come in bursts: a conversation leaves several about the same topic.
        if rng.random() < 0.5:
            topic = rng.choice(_TOPICS)
        memory_id = _uuid(rng)
        vector = [round(v, 6) for v in _unit_vector(rng, bases[topic.key], 0.8)]
        stamp = moment.isoformat(timespec="seconds")
        record = {
            "id": memory_id,
            "text": _pick(rng, topic, moment, topic.facts),
            "embedding": vector,
            "timestamp": stamp,
            "memory_type": rng.choice(("episodic", "episodic", "semantic", "procedural")),
            "quickr_score": round(rng.uniform(0.2, 0.98), 4),
            "metadata": {
                "source": rng.choice(("conversation", "reflection", "tool_output")),
                "topic": topic.key,
                "tags": list(topic.tags[:3]),
                "emotion": {"dominant": rng.choice(("neutral", "neutral", "joy", "frustration",
                                                    "anticipation")),
                            "valence": round(rng.uniform(-0.6, 0.8), 2)},
                "access_count": rng.randint(0, 12),
                "last_accessed": (moment + timedelta(hours=rng.randint(1, 400))).isoformat(
                    timespec="seconds"),
                "assemblies": [],
            },
        }
        by_topic.setdefault(topic.key, []).append(memory_id)
        records.append(record)

    by_id = {r["id"]: r for r in records}
    assemblies: list[dict[str, Any]] = []
    # Assemblies form around the topics with the most memories.
    ranked = sorted(by_topic, key=lambda k: (-len(by_topic[k]), k))
    for number in range(3 * scale):
        key = ranked[number % len(ranked)]
        topic = _TOPIC_BY_KEY[key]
        members = sorted(rng.sample(by_topic[key], k=min(len(by_topic[key]), rng.randint(2, 8))))
        asm_id = f"asm_{_hex(rng, 12)}"
        for member in members:
            by_id[member]["metadata"]["assemblies"].append(asm_id)
        composite = [sum(by_id[m]["embedding"][i] for m in members) / len(members)
                     for i in range(_SYNTHIANS_DIM)]
        norm = math.sqrt(sum(v * v for v in composite)) or 1.0
        created = max(by_id[m]["timestamp"] for m in members)
        assemblies.append({
            "id": asm_id,
            "name": topic.title,
            "description": " ".join(_fill(rng, topic, BASE_DATE, f) for f in topic.facts[:2]),
            "memory_ids": members,
            "composite_embedding": [round(v / norm, 6) for v in composite],
            "tags": list(topic.tags),
            "topics": [topic.key],
            "activation_count": rng.randint(0, 30),
            "created_at": created,
            "updated_at": created,
            "assembly_schema_version": "1.0",
        })

    for record in records:
        _write(root / "memories" / f"{record['id']}.json", _dump_json(record))
    for assembly in assemblies:
        _write(root / "assemblies" / f"{assembly['id']}.json", _dump_json(assembly))
    index = {
        "version": "1.0",
        "updated_at": max(r["timestamp"] for r in records),
        "memory_count": len(records),
        "assembly_count": len(assemblies),
        "memories": {r["id"]: {"path": f"memories/{r['id']}.json", "timestamp": r["timestamp"],
                               "quickr_score": r["quickr_score"], "memory_type": r["memory_type"],
                               "topic": r["metadata"]["topic"]} for r in records},
        "assemblies": {a["id"]: {"path": f"assemblies/{a['id']}.json", "name": a["name"],
                                 "memory_count": len(a["memory_ids"])} for a in assemblies},
    }
    _write(root / "memory_index.json", _dump_json(index))
    return len(records) + len(assemblies) + 1


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------

_WRITERS: dict[str, Callable[[Path, Random, int], int]] = {
    "openclaw": _write_openclaw,
    "ragent": _write_ragent,
    "memento": _write_memento,
    "synthians": _write_synthians,
}


def file_count(kind: str, scale: int) -> int:
    """How many files generate() writes for one kind at a scale."""
    counts = {"openclaw": 6 + 12 * scale, "ragent": 6, "memento": 1, "synthians": 1 + 23 * scale}
    if kind not in counts:
        raise UsageError(f"unknown example kind: {kind!r}", hint=f"choose from {', '.join(KINDS)}")
    return counts[kind]


def generate(out: Path, *, scale: int = 1, seed: int = 0,
             kinds: Sequence[str] = KINDS) -> dict[str, int]:
    """Write one folder of agent memory per kind under out; return the files written per kind."""
    if isinstance(kinds, str):
        kinds = (kinds,)
    for kind in kinds:
        file_count(kind, 1)  # validates the name
    if scale < 1:
        raise UsageError(f"scale must be at least 1, not {scale}")
    out = Path(out)
    for kind in kinds:
        root = out / kind
        if root.exists() and any(root.iterdir()):
            raise UsageError(f"{root}: already exists and is not empty",
                             hint="generate writes into fresh folders only; remove it first")
    written: dict[str, int] = {}
    for kind in dict.fromkeys(kinds):
        # One rng per kind, so generating a subset of kinds gives the same files.
        rng = _Gen(f"vault-examples:{seed}:{kind}")
        written[kind] = _WRITERS[kind](out / kind, rng, scale)
    return written


def scale_for_files(files: int) -> int:
    """The scale at which generate() writes the number of files closest to `files`."""
    if files < 1:
        raise UsageError(f"files must be at least 1, not {files}")
    fixed = sum(file_count(kind, 0) for kind in KINDS)
    per_scale = sum(file_count(kind, 1) for kind in KINDS) - fixed
    return max(1, round((files - fixed) / per_scale))


def generate_files(out: Path, *, files: int, seed: int = 0) -> dict[str, int]:
    """Generate all kinds at the scale whose total file count is closest to `files`."""
    return generate(out, scale=scale_for_files(files), seed=seed)


# ---------------------------------------------------------------------------------------------
# mutate: what an agent does between two syncs.
# ---------------------------------------------------------------------------------------------

_TEXT_KEYS = ("content", "text", "summary", "response", "description")
_STAMP_HINTS = ("updated", "last_accessed", "lastaccessed")
_COUNTER_HINTS = ("access_count", "activation_count", "accesscount")
_MUTABLE_SUFFIXES = (".md", ".json", ".jsonl")


def _later(value: Any, minutes: int) -> Any:
    """The timestamp `minutes` after value, in the same format; anything else unchanged."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 10**12:
        return value + minutes * 60_000
    if not isinstance(value, str) or len(value) < 19 or value[4:5] != "-":
        return value
    try:
        moment = _parse_stamp(value)
    except ValueError:
        return value
    moment += timedelta(minutes=minutes)
    if value.endswith("Z"):
        return _iso_js(moment) if "." in value else moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    spec = "milliseconds" if "." in value else "seconds"
    return moment.isoformat(sep=value[10], timespec=spec)


def _parse_stamp(value: str) -> datetime:
    """Parse an ISO timestamp, accepting a trailing Z on every supported Python."""
    return datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)


def _sentence(rng: Random) -> str:
    """A fresh, filled fact from any topic."""
    topic = rng.choice(_TOPICS)
    return _pick(rng, topic, BASE_DATE + timedelta(days=rng.randint(0, 365)), topic.facts)


def _touch(record: dict[str, Any], rng: Random, depth: int = 0) -> bool:
    """Update a record the way an agent revisits one: stamps, counters, an appended note."""
    changed = False
    for key in list(record):
        value = record[key]
        lowered = key.lower()
        if isinstance(value, str) and key in _TEXT_KEYS:
            record[key] = f"{value} Update: {_sentence(rng)}"
            changed = True
        elif any(hint in lowered for hint in _STAMP_HINTS):
            new = _later(value, rng.randint(5, 600))
            changed = changed or new != value
            record[key] = new
        elif lowered in _COUNTER_HINTS and isinstance(value, int) and not isinstance(value, bool):
            record[key] = value + 1
            changed = True
        elif lowered.endswith("score") and isinstance(value, float):
            record[key] = round(min(1.0, value + rng.uniform(0.01, 0.05)), 4)
            changed = True
        elif isinstance(value, dict) and depth == 0 and key != "emotion":
            changed = _touch(value, rng, depth + 1) or changed
    return changed


def _evolve(entry: dict[str, Any], rng: Random) -> dict[str, Any]:
    """A new list entry shaped like entry: fresh id, later timestamps, new text."""
    new: dict[str, Any] = {}
    minutes = rng.randint(5, 600)
    for key, value in entry.items():
        if key == "id" and isinstance(value, str):
            new[key] = _uuid(rng) if len(value) == 36 else f"{value}-{_hex(rng, 6)}"
        elif key in _TEXT_KEYS or key == "prompt":
            new[key] = _sentence(rng) if isinstance(value, str) else value
        elif isinstance(value, (str, int)) and _later(value, minutes) != value:
            new[key] = _later(value, minutes)
        else:
            new[key] = json.loads(json.dumps(value))
    return new


def _mutate_json(data: Any, rng: Random) -> Any:
    """Append an entry to the file's main list, or revisit one of its records."""
    if isinstance(data, list):
        if data and isinstance(data[-1], dict):
            data.append(_evolve(data[-1], rng))
        else:
            data.append(_sentence(rng))
        return data
    if not isinstance(data, dict):
        return data
    for value in data.values():
        if isinstance(value, list) and value and isinstance(value[-1], dict):
            entry = _evolve(value[-1], rng)
            value.append(entry)
            if "updated_at" in data:
                data["updated_at"] = entry.get("timestamp", _later(data["updated_at"], 5))
            return data
    records: dict[str, Any] | None = None
    if data and all(isinstance(v, dict) for v in data.values()):
        records = data
    else:
        for value in data.values():
            if (isinstance(value, dict) and value
                    and all(isinstance(v, dict) for v in value.values())):
                records = value
                break
    if records:
        record = records[rng.choice(sorted(records))]
        changed = _touch(record, rng)
        if not changed:
            record["revision"] = int(record.get("revision", 0)) + 1
        if "updated_at" in data:
            data["updated_at"] = _later(data["updated_at"], rng.randint(5, 600))
        return data
    if not _touch(data, rng):
        data["revision"] = int(data.get("revision", 0)) + 1
    return data


def _mutate_jsonl(text: str, rng: Random) -> str:
    """One more message node, chained to the last line of the transcript."""
    last: dict[str, Any] = {}
    for line in reversed(text.splitlines()):
        if line.strip():
            last = json.loads(line)
            break
    moment = BASE_DATE
    stamp = last.get("timestamp")
    if isinstance(stamp, str):
        moment = _parse_stamp(stamp)
    moment += timedelta(seconds=rng.randint(20, 3600))
    role = "user" if last.get("message", {}).get("role") == "assistant" else "assistant"
    topic = rng.choice(_TOPICS)
    body = _pick(rng, topic, moment, topic.asks + _FOLLOW_UPS if role == "user" else topic.facts)
    node = {"type": "message", "id": _hex(rng, 8), "parentId": last.get("id"),
            "timestamp": _iso_js(moment),
            "message": {"role": role, "content": [{"type": "text", "text": body}],
                        "timestamp": _epoch_ms(moment)}}
    prefix = "" if not text or text.endswith("\n") else "\n"
    return text + prefix + _jsonl_line(node)


def _mutate_markdown(text: str, rng: Random) -> str:
    """A short appended section, the way an agent adds to today's note."""
    topic = rng.choice(_TOPICS)
    moment = BASE_DATE + timedelta(days=rng.randint(0, 365))
    lines = [f"## Update {rng.randint(8, 21):02d}:{rng.randint(0, 59):02d}"]
    lines.extend(f"- {_pick(rng, topic, moment, topic.facts)}" for _ in range(rng.randint(1, 2)))
    if topic.todos and rng.random() < 0.5:
        lines.append(f"- [ ] {_pick(rng, topic, moment, topic.todos)}")
    separator = "" if text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
    return text + separator + "\n".join(lines) + "\n"


def mutable_files(out: Path) -> list[Path]:
    """The markdown, JSON and JSONL files under out that mutate() may change, sorted."""
    out = Path(out)
    found = [
        path for path in out.rglob("*")
        if path.suffix in _MUTABLE_SUFFIXES and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(out).parts)
    ]
    return sorted(found, key=lambda p: p.relative_to(out).as_posix())


def mutate(out: Path, *, fraction: float, seed: int) -> list[Path]:
    """Change about `fraction` of the text/JSON/JSONL files under out in place; return them."""
    if not 0.0 <= fraction <= 1.0:
        raise UsageError(f"fraction must be between 0 and 1, not {fraction}")
    rng = _Gen(f"vault-examples-mutate:{seed}")
    candidates = mutable_files(Path(out))
    if not candidates or fraction == 0.0:
        return []
    count = min(len(candidates), max(1, round(fraction * len(candidates))))
    chosen = sorted(rng.sample(range(len(candidates)), k=count))
    changed: list[Path] = []
    for position in chosen:
        path = candidates[position]
        text = path.read_bytes().decode("utf-8")
        if path.suffix == ".md":
            new_text = _mutate_markdown(text, rng)
        elif path.suffix == ".jsonl":
            new_text = _mutate_jsonl(text, rng)
        else:
            new_text = _dump_json(_mutate_json(json.loads(text), rng))
        if new_text != text:
            path.write_bytes(new_text.encode("utf-8"))
            changed.append(path)
    return changed
