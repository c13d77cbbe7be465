"""``HeuristicRouter``: cheap rules over the request's text, no LLM call.

It scores the request and sends it to the strong tier at or above a threshold. Signals:

- **length**: tokens of the request (long asks tend to be hard; a long paste with a
  short, simple instruction is recognised by the simple-task phrases below);
- **code**: a fenced code block or code-like lines;
- **question shape**: *why*, *how would you*, *should we*, *prove*, *explain ... and*;
- **multi-step asks**: several questions, *step by step*, *walk me through*, *then*;
- **keywords**: configurable lists of hard topics (debug, architecture, security, legal,
  performance, concurrency, proofs, finance...) and of simple tasks (translate a phrase,
  fix the spelling, a synonym, a haiku...).

The weights and the threshold are tuned on the shipped labelled set
(``agentbudget/data/routing_eval.jsonl``): see docs/routing.md for the figures,
including a held-out split.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

from agents import Model

from ..errors import ConfigurationError
from ..report import Route
from ..tokens import count_text, get_encoding
from .base import RouteRequest, Tier, check_tiers, fitting_tier

__all__ = [
    "COMPLEX_KEYWORDS",
    "DEFAULT_THRESHOLD",
    "SIMPLE_KEYWORDS",
    "HeuristicRouter",
    "Score",
]

#: Phrases of hard work, each with its weight (matched as regular expressions, case-insensitive).
COMPLEX_KEYWORDS: dict[str, float] = {
    r"\bprove\b|\bproof\b|\bjustify\b|\bderive\b": 3.0,
    r"\bwhy\b": 1.5,
    r"\bdebug|\bbug\b|\bdeadlock|\brace condition|\bthread-safe|\bleak|\bhang|\bflaky": 2.5,
    r"\barchitecture\b|\bdesign\b|\bschema\b|\bscal(e|ing|able)\b|\bshard": 2.0,
    r"\bsecurity\b|\bsecure\b|\bvulnerab|\binjection\b|\bauth(entication|orization)?\b": 2.0,
    r"\blegal\b|\bcontract\b|\bclause|\benforceable|\blaw\b|\bregulat|\bliabilit|\bindemn": 2.5,
    r"\btrade-?offs?\b|\bpros and cons of our\b|\bcompare\b|\bversus\b|\bvs\.?\s": 1.5,
    r"\boptimi[sz]e|\blatency\b|\bslow\b|\bperformance\b|\bmemory\b|\bp99\b": 2.0,
    r"\brefactor|\bmigrat|\bport (this|our)|\bconvert our\b|\bafter upgrading\b": 1.5,
    r"\binvestigat|\broot cause|\brca\b|\bnarrow it down|\bdiagnos": 2.0,
    r"\bshould we\b|^should\b|\bshould i\b.{0,60}\bor\b": 2.0,
    r"\bwhich should\b|\bdecide\b|\bstrategy\b": 2.0,
    r"\bprobabilit|\bexpected\b|\bsignifican|\bconfidence interval": 2.0,
    r"\b\d+% power\b|\bregression\b": 2.0,
    r"\beigen|\brecurrence|\bintegral\b|\btheorem|\bprime\b|\binteger solutions": 1.5,
    r"\bimplement|\bwrite an? (efficient|secure|parser|migration)|\bbuild a\b": 1.5,
    r"\bforecast|\bunit economics|\bchurn|\bcohort|\bcredit\b|\bsla\b|\bmortgage|\bloan": 1.5,
    r"\btax\b|\bincorporat|\bequity\b|\binvest\b|\bgdpr\b|\bdpa\b|\bdora\b": 2.0,
    r"\bethic|\bmedical\b|\bchest pain|\bsymptom|\bate\b.*\bchocolate|\bwhat should i do\b": 2.5,
    r"\bconsensus|\bdistributed|\bkafka|\bcrdt|\bkubernetes|\bcap theorem|\bgarbage collector": 2.0,
    r"\bin the style of|\bstrict|\bpreserv|\bkeeping (every|consistent|my voice)|\bsteel-?man": 2.0,
    r"\b\d[\d,]*-word|\bchapter\b|\bop-ed|\bproposal|\beulogy|\bpress release|\bdebate\b": 1.5,
    r"\bdraft the\b|\bstructured\b.{0,40}\breport\b": 2.0,
    r"\bidentify inconsistenc|\bwhat are my options": 2.0,
    r"\bshow that\b|\bestimate how many\b|\bstate every assumption|\? explain\b": 2.0,
    r"\bexplain (how|why|the difference|the mechanisms)|\binterpret\b": 1.5,
    r"\bevery line is\b|\brhyme|\brime\b|\bmeter\b|\bmètre|\bpun\b|\bfunn(y|ier)\b": 2.0,
    # the same asks in other languages: why, explain, analyse, design, liability, contract
    r"\bpourquoi\b|\bpor qué\b|\bwarum\b|\bпочему\b|为什么|\bperché\b|\bpor que\b": 1.5,  # noqa: RUF001
    r"\bexplique|\berkläre|\bобъясни|\bexplica|\bspiega|分析|设计": 2.0,  # noqa: RUF001
    r"\bhaftung|\bcontrato\b|\bdireito\b": 2.0,
    r"\bnext number\b|\bhow many (ways|r's)|\bin how many ways|\bwhich is (larger|heavier)": 2.5,
    r"\bplan (a|our) (two|2)-week|\btraining plan|\bitinerary\b.*\bwheelchair": 1.0,
    r"\bstill doesn't work\b|^\s*why\??\s*$|\bmake this joke\b": 3.0,
    r"\bwhat would happen\b|\bmonty hall\b|\bmirrors?\b": 2.0,
    r"\blocali[sz]e\b|\badapt(ing)?\b": 1.5,
}

#: Phrases of simple work, each with its (negative) weight.
SIMPLE_KEYWORDS: dict[str, float] = {
    r"\btranslate\b|\btraduis\b|\btranslat(e|ion) (to|into)\b|\bübersetze|\b翻译": -2.5,
    r"\bsynonyms?\b|\bspelling\b|\bgrammar\b|\bcapitali[sz]e\b|\bplural\b|\bpronounce": -2.5,
    r"\bone sentence\b|\bone line\b|\bone-line\b|\bin two sentences\b|\bin simple terms": -2.0,
    r"\bhaiku\b|\blimerick\b|\btweet\b|\briddle\b|\bname ideas\b|\btitle for\b|\balt text": -2.5,
    r"\bwhat('s| is| does) (the )?(capital|difference between (a|weather|==)|a |an )": -1.5,
    r"\bhow do i (reset|cancel|change|install|read|check|undo|export|add|turn on|make)\b": -1.5,
    r"\brename\b|\bformat this\b|\bfix the (syntax|spelling)\b|\bsort (this|them)\b": -2.5,
    r"\bconvert \d|\bhow many (minutes|seconds|cups|players)|\bround\b|\bsimplify\b": -2.0,
    r"\bsummari[sz]e (this|in)\b|\bshorten\b|\bcount how many\b|\bmore formal\b": -2.5,
    r"\bclassify\b|\bextract\b|\bcategori[sz]e\b|\btag the sentiment\b|\bis this email spam": -2.5,
    r"\bshortcut\b|\bcommand to\b|\bone-liner\b|\bdefault port\b|\bwhat port\b": -2.0,
    r"\brefund\b|\binvoice\b|\breceipt\b|\bsubscription\b|\bpassword\b|\bship\b": -1.0,
    r"\bwhat does .{1,40} (mean|stand for)\b|\bwhat does `": -2.0,
    r"\bexplain what\b|\bexplain in one\b|\bto my grandmother\b": -1.5,
}

#: Weight by the request's length in tokens: ``(up to this many tokens, weight)``, the
#: last bound infinite. Short asks lean simple, long ones complex: keyword lists alone do
#: not generalise (docs/routing.md has the figures).
LENGTH_WEIGHTS: tuple[tuple[float, float], ...] = (
    (12, -1.0),
    (25, 0.0),
    (60, 1.0),
    (150, 1.5),
    (float("inf"), 2.0),
)

#: The score at or above which a request goes to the strong tier (tuned on the shipped set).
DEFAULT_THRESHOLD = 1.0

_CODE_FENCE = re.compile(r"```")
_CODE_LINE = re.compile(
    r"^\s*(def |class |func |fn |for |if |while |return |const |let |import )", re.M
)
_QUESTION = re.compile(r"\?")
_MULTI_STEP = re.compile(
    r"\bstep[- ]by[- ]step\b|\bwalk (me )?through\b|\band then\b|\bthen (explain|generalise|"
    r"propose)|\binclud(e|ing) (tests|rollback|the)\b|\b(first|second|third)\b.*\bthen\b",
    re.I,
)
_NUMBERS = re.compile(r"\d[\d,.]*")


@dataclasses.dataclass(frozen=True, slots=True)
class Score:
    """A request's heuristic score and the signals that made it."""

    value: float
    signals: tuple[str, ...]


class HeuristicRouter:
    """Routes by cheap text heuristics, once per run: simple work to the cheap tier,
    complex work to the strong one.

    Args:
        simple: the cheap tier's model (a name, a ``Model`` or a ``Tier``).
        complex: the strong tier's model.
        tiers: named tiers instead, cheapest first (``Tier("local", local_model(...)),
            Tier("simple", "gpt-4o-mini"), Tier("complex", "gpt-4o")``).
        thresholds: the scores at which a request moves up one tier, ascending, one fewer
            than the tiers. Default: ``DEFAULT_THRESHOLD`` between two tiers; with more
            tiers they must be given.
        complex_keywords: ``{regex: weight}`` added to (or, with ``replace_keywords``,
            replacing) ``COMPLEX_KEYWORDS``; a weight of 0 removes a default pattern.
        simple_keywords: the same for ``SIMPLE_KEYWORDS`` (negative weights).
        replace_keywords: use only the keyword lists given.

    A tier whose declared capabilities (tools, structured output, context window) do not
    fit the agent is skipped for the next stronger one.
    """

    def __init__(
        self,
        simple: str | Model | Tier | None = "gpt-4o-mini",
        complex: str | Model | Tier | None = "gpt-4o",
        *,
        tiers: Sequence[Tier] | None = None,
        thresholds: Sequence[float] | None = None,
        complex_keywords: dict[str, float] | None = None,
        simple_keywords: dict[str, float] | None = None,
        replace_keywords: bool = False,
    ) -> None:
        if tiers is not None:
            self.tiers = check_tiers(tiers)
        else:
            if simple is None or complex is None:
                raise ConfigurationError("HeuristicRouter needs simple= and complex=, or tiers=")
            self.tiers = check_tiers((Tier.of("simple", simple), Tier.of("complex", complex)))
        if thresholds is None:
            if len(self.tiers) > 2:
                raise ConfigurationError(
                    f"{len(self.tiers)} tiers need thresholds= ({len(self.tiers) - 1} ascending "
                    "scores at which a request moves up one tier)"
                )
            thresholds = (DEFAULT_THRESHOLD,) * (len(self.tiers) - 1)
        self.thresholds = tuple(_number("threshold", t) for t in thresholds)
        if len(self.thresholds) != len(self.tiers) - 1 or list(self.thresholds) != sorted(
            self.thresholds
        ):
            raise ConfigurationError(
                f"thresholds must be {len(self.tiers) - 1} ascending numbers, got {thresholds!r}"
            )
        self.length_weights = LENGTH_WEIGHTS
        self._complex = _compile(COMPLEX_KEYWORDS, complex_keywords, replace_keywords, "complex")
        self._simple = _compile(SIMPLE_KEYWORDS, simple_keywords, replace_keywords, "simple")

    def __repr__(self) -> str:
        return (
            f"HeuristicRouter(tiers={[t.name for t in self.tiers]}, thresholds={self.thresholds})"
        )

    @property
    def strongest(self) -> Tier:
        return self.tiers[-1]

    def score(self, text: str) -> Score:
        """The heuristic score of a request's text (higher: harder)."""
        signals: list[str] = []
        value = 0.0
        tokens = count_text(text, get_encoding("o200k_base"))
        weight = next(w for upto, w in self.length_weights if tokens <= upto)
        if weight:
            value += weight
            signals.append(f"{tokens} tokens {weight:+g}")
        if _CODE_FENCE.search(text) or len(_CODE_LINE.findall(text)) >= 2:
            value += 0.5
            signals.append("code +0.5")
        questions = len(_QUESTION.findall(text))
        if questions >= 2:
            value += 1.0
            signals.append(f"{questions} questions +1")
        if _MULTI_STEP.search(text):
            value += 1.5
            signals.append("multi-step +1.5")
        if len(_NUMBERS.findall(text)) >= 6:
            value += 1.0
            signals.append("many figures +1")
        for pattern, weight in (*self._complex, *self._simple):
            found = pattern.search(text)
            if found:
                value += weight
                signals.append(f"{found.group(0).strip()[:30]!r} {weight:+g}")
        return Score(value, tuple(signals))

    def tier_index(self, text: str) -> tuple[int, Score]:
        score = self.score(text)
        index = sum(1 for threshold in self.thresholds if score.value >= threshold)
        return index, score

    def route_sync(self, request: RouteRequest) -> Route:
        """The route, decided synchronously (pure CPU): streamed runs use it too."""
        index, score = self.tier_index(request.text)
        shown = ", ".join(score.signals[:4]) or "no signal"
        reason = f"heuristic score {score.value:g} ({shown})"
        return fitting_tier(self.tiers, index, request, reason)

    async def route(self, request: RouteRequest) -> Route:
        return self.route_sync(request)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be a number, got {value!r}")
    return float(value)


def _compile(
    defaults: dict[str, float],
    given: dict[str, float] | None,
    replace: bool,
    kind: str,
) -> tuple[tuple[re.Pattern[str], float], ...]:
    if given is not None and not isinstance(given, dict):
        raise ConfigurationError(
            f"{kind}_keywords must be a dict of regex to weight, got {given!r}"
        )
    merged = {} if replace else dict(defaults)
    merged.update(given or {})
    compiled: list[tuple[re.Pattern[str], float]] = []
    for pattern, weight in merged.items():
        weight = _number(f"{kind} keyword weight for {pattern!r}", weight)
        if weight == 0:
            continue
        try:
            compiled.append((re.compile(pattern, re.I | re.M), weight))
        except re.error as exc:
            raise ConfigurationError(
                f"{kind} keyword {pattern!r} is not a valid regex: {exc}"
            ) from exc
    return tuple(compiled)
