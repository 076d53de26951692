"""``scheduled_preview``: a team's games for a season (and week) from CFBD or ESPN, summarized.

===========  ===============================================================  ===================
provider     request                                                          auth
===========  ===============================================================  ===================
``cfbd``     GET {cfbd_base_url}/games?year=<season>&week=<week>&team=<team>  ``Bearer <key>``
``espn``     GET {espn_base_url}/scoreboard?dates=<season>&week=<week>        ``X-API-Key: <key>``
===========  ===============================================================  ===================

``week`` is sent only when the payload has one. CFBD filters by team itself; ESPN's scoreboard
lists every game, and the handler keeps those where one side's name (display name, short name,
location, nickname or abbreviation) equals the team, case-insensitively. The credential's
provider must be the payload's ``provider``.

The result: ``{"team", "season", "week", "provider", "games": [{"opponent", "home", "start",
"venue"}], "count", "summary"}``, games sorted by start time.
"""

from __future__ import annotations

from typing import Any

from pgjobs.db.models import Provider
from pgjobs.producer.builtin_types import ScheduledPreviewPayload, scheduled_preview
from pgjobs.settings import get_settings
from pgjobs.worker.context import JobContext
from pgjobs.worker.errors import PermanentError
from pgjobs.worker.handlers import http
from pgjobs.worker.handlers.credential_check import credential_secret, provider_credential
from pgjobs.worker.handlers.registry import handles

Game = dict[str, Any]


def _same(a: object, b: str) -> bool:
    return isinstance(a, str) and a.strip().casefold() == b.strip().casefold()


def _first(item: dict[str, Any], *keys: str) -> Any:
    """The first present value among ``keys`` (CFBD v2 is camelCase, v1 snake_case)."""
    for key in keys:
        if item.get(key) is not None:
            return item[key]
    return None


def cfbd_games(body: Any, team: str) -> list[Game]:
    """Games from a CFBD ``/games`` answer (a list of games)."""
    if not isinstance(body, list):
        raise PermanentError("cfbd: games answer is not a list")
    games = []
    for item in body:
        if not isinstance(item, dict):
            continue
        home_team = _first(item, "homeTeam", "home_team")
        away_team = _first(item, "awayTeam", "away_team")
        if _same(home_team, team):
            home, opponent = True, away_team
        elif _same(away_team, team):
            home, opponent = False, home_team
        else:
            continue
        games.append(
            {
                "opponent": opponent,
                "home": home,
                "start": _first(item, "startDate", "start_date"),
                "venue": item.get("venue"),
            }
        )
    return games


_ESPN_NAMES = ("displayName", "shortDisplayName", "location", "name", "abbreviation")


def _espn_is(competitor: dict[str, Any], team: str) -> bool:
    info = competitor.get("team")
    return isinstance(info, dict) and any(_same(info.get(key), team) for key in _ESPN_NAMES)


def _espn_name(competitor: dict[str, Any]) -> Any:
    info = competitor.get("team")
    return _first(info, "displayName", "location", "name") if isinstance(info, dict) else None


def espn_games(body: Any, team: str) -> list[Game]:
    """The team's games from an ESPN ``/scoreboard`` answer (``events[].competitions[]``)."""
    events = body.get("events") if isinstance(body, dict) else None
    if not isinstance(events, list):
        raise PermanentError("espn: scoreboard answer has no events list")
    games = []
    for event in events:
        competitions = event.get("competitions") if isinstance(event, dict) else None
        if not isinstance(competitions, list) or not competitions:
            continue
        competition = competitions[0]
        competitors = [c for c in competition.get("competitors") or [] if isinstance(c, dict)]
        ours = [c for c in competitors if _espn_is(c, team)]
        others = [c for c in competitors if not _espn_is(c, team)]
        if len(ours) != 1 or len(others) != 1:
            continue
        venue = competition.get("venue")
        games.append(
            {
                "opponent": _espn_name(others[0]),
                "home": ours[0].get("homeAway") == "home",
                "start": _first(competition, "date", "startDate") or event.get("date"),
                "venue": venue.get("fullName") if isinstance(venue, dict) else None,
            }
        )
    return games


def summarize(team: str, season: int, week: int | None, games: list[Game]) -> str:
    when = f"{season} week {week}" if week is not None else str(season)
    if not games:
        return f"{team} has no games in {when}"
    parts = []
    for game in games:
        where = "vs" if game["home"] else "at"
        day = f" ({str(game['start'])[:10]})" if game["start"] else ""
        parts.append(f"{where} {game['opponent']}{day}")
    noun = "game" if len(games) == 1 else "games"
    return f"{team} plays {len(games)} {noun} in {when}: {', '.join(parts)}"


def auth_headers(provider: Provider, secret: str) -> dict[str, str]:
    """CFBD takes a Bearer token; the ESPN stand-in an ``X-API-Key`` header."""
    if provider is Provider.CFBD:
        return {"Authorization": http.bearer(secret)}
    return {"X-API-Key": http.header_value(secret)}


@handles(scheduled_preview)
def run(ctx: JobContext[ScheduledPreviewPayload]) -> dict[str, Any]:
    payload = ctx.payload
    provider = Provider(payload.provider)
    provider_credential(ctx.tenant_id, payload.credential_id, {provider})
    settings = get_settings()
    params: dict[str, str | int]
    if provider is Provider.CFBD:
        url = f"{settings.cfbd_base_url.rstrip('/')}/games"
        params = {"year": payload.season, "team": payload.team}
    else:
        url = f"{settings.espn_base_url.rstrip('/')}/scoreboard"
        params = {"dates": payload.season}
    if payload.week is not None:
        params["week"] = payload.week

    action = "schedule request"
    ctx.progress(10, f"asking {provider.value} for {payload.team}'s {payload.season} games")
    with http.client() as client, credential_secret(ctx, payload.credential_id) as secret:
        response = http.send(
            client,
            "GET",
            url,
            provider=provider.value,
            action=action,
            params=params,
            headers=auth_headers(provider, secret.reveal()),
        )
    http.check_status(response, provider=provider.value, action=action)
    body = http.json_body(response, provider=provider.value, action=action)
    ctx.progress(60, f"{provider.value} answered; building the preview")

    if provider is Provider.CFBD:
        games = cfbd_games(body, payload.team)
    else:
        games = espn_games(body, payload.team)
    games.sort(key=lambda game: str(game["start"] or ""))
    ctx.progress(100, f"{len(games)} games found")
    return {
        "team": payload.team,
        "season": payload.season,
        "week": payload.week,
        "provider": provider.value,
        "games": games,
        "count": len(games),
        "summary": summarize(payload.team, payload.season, payload.week, games),
    }
