"""Calibration texts for weight-only quantisation (``int8w``/``int4w``, ``weight_only.py``).

GPTQ rounds each weight matrix against the inputs its MatMul sees on these texts, run through the
exported fp32 graph in the retriever's own prompts (queries and passages, K mask slots). Short general
texts from many fields, written for this package, plus long ones (all passages joined, rotated): the
long ones reach ``max_document_length``, so every position embedding the model will meet is covered.
Calibrating on short texts alone overfits the rounding to early positions: on MiniLM the error on
full-length SciFact passages then came out no better than plain rounding (3.3e-2 vs 1.2e-2 with the
long texts). Callers may pass their own texts (a sample of their corpus) instead.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

QUERIES = [
    "what causes high blood pressure in young adults",
    "how do vaccines train the immune system",
    "best way to store fresh herbs",
    "symptoms of iron deficiency anemia",
    "why is the sky blue during the day",
    "how does compound interest work",
    "effects of caffeine on sleep quality",
    "difference between weather and climate",
    "who invented the printing press",
    "how to reduce memory usage in a python program",
    "treatment options for type 2 diabetes",
    "what is the boiling point of water at high altitude",
    "how do solar panels convert light into electricity",
    "causes of the first world war",
    "how to train for a marathon as a beginner",
    "side effects of long term antibiotic use",
    "what is a black hole made of",
    "how are interest rates set by central banks",
    "gene expression regulation in bacteria",
    "can dogs eat grapes",
    "how does a search engine rank web pages",
    "renewable energy storage with batteries",
    "origin of the english language",
    "does exercise improve mental health",
]

PASSAGES = [
    "Hypertension is a chronic condition in which the pressure of blood against the artery walls stays "
    "elevated. Risk factors include high salt intake, obesity, physical inactivity, smoking and a family "
    "history of the disease. Untreated, it damages the heart, kidneys and brain over many years.",
    "Vaccines expose the immune system to a harmless piece or weakened form of a pathogen. B cells learn to "
    "produce antibodies against it and memory cells persist for years, so a later infection is recognised "
    "and cleared before it causes serious illness.",
    "Soft herbs such as parsley, cilantro and basil keep best when their stems are trimmed and placed in a "
    "glass of water, like cut flowers. Hardy herbs like rosemary and thyme can be wrapped in a damp paper "
    "towel and kept in the refrigerator for up to two weeks.",
    "Iron deficiency reduces the amount of hemoglobin in red blood cells. Patients report fatigue, pale "
    "skin, shortness of breath on exertion, brittle nails and sometimes a craving for ice. A blood test "
    "measuring ferritin confirms the diagnosis.",
    "Sunlight is scattered by the molecules of the atmosphere. Shorter wavelengths are scattered much more "
    "strongly than longer ones, an effect described by Rayleigh, so blue light reaches the eye from every "
    "direction of the sky while the sun itself looks slightly yellow.",
    "With compound interest, the interest earned in each period is added to the principal, and the next "
    "period's interest is computed on the larger balance. Over decades the growth becomes exponential: at "
    "seven percent a year an investment doubles roughly every ten years.",
    "Caffeine blocks adenosine receptors in the brain and has a half-life of about five hours. A cup of "
    "coffee in the late afternoon can delay sleep onset, shorten deep sleep and leave people feeling less "
    "rested the next morning, even when they fall asleep without difficulty.",
    "Weather describes the state of the atmosphere over hours or days: temperature, rain, wind and cloud "
    "cover at one place. Climate is the long-term average of weather over thirty years or more, and the "
    "range of variation around that average.",
    "Johannes Gutenberg developed a printing press with movable metal type in Mainz around 1450. Cheaper "
    "books spread literacy, scientific ideas and religious debate across Europe within a few decades.",
    "Python programs that load large datasets can reduce memory by streaming records with generators, by "
    "storing numbers in numpy arrays instead of lists of objects, and by using __slots__ on classes that "
    "are instantiated millions of times.",
    "Type 2 diabetes is usually managed first with diet, weight loss and regular physical activity. When "
    "these are not enough, metformin is the standard first medication; SGLT2 inhibitors, GLP-1 receptor "
    "agonists and insulin are added as the disease progresses.",
    "Water boils when its vapour pressure equals the surrounding air pressure. At 3,000 metres the pressure "
    "is about 70 kPa, so water boils near 90 degrees Celsius and pasta or beans take noticeably longer to "
    "cook.",
    "A photovoltaic cell is a junction of two layers of doped silicon. Photons with enough energy free "
    "electrons, and the electric field at the junction drives them through an external circuit as a direct "
    "current, which an inverter converts to alternating current for the grid.",
    "The assassination of Archduke Franz Ferdinand in Sarajevo in June 1914 triggered a chain of alliance "
    "obligations. Militarism, imperial rivalry and nationalism had already raised tensions among the great "
    "powers of Europe for decades.",
    "A beginner marathon plan typically lasts sixteen to twenty weeks. Weekly mileage rises by no more than "
    "ten percent, one long run is extended gradually to about thirty kilometres, and easy days and rest "
    "days allow the body to adapt and avoid injury.",
    "Prolonged antibiotic treatment disturbs the gut microbiome and can lead to diarrhoea, fungal infections "
    "and, in hospital settings, Clostridioides difficile colitis. Repeated exposure also selects for "
    "resistant strains of bacteria.",
    "A black hole forms when a massive star collapses under its own gravity. Its mass is concentrated in a "
    "region bounded by the event horizon, from which not even light can escape; what lies at the centre is "
    "described by general relativity as a singularity.",
    "Central banks set a short-term policy rate, the rate at which commercial banks borrow reserves. Raising "
    "it makes credit more expensive, slows spending and lowers inflation; cutting it does the opposite and "
    "supports employment during recessions.",
    "In bacteria, genes with related functions are often grouped in operons transcribed as one messenger "
    "RNA. Repressor proteins bind the operator sequence to block transcription, as in the lac operon, which "
    "is switched on only when lactose is present and glucose is scarce.",
    "Grapes and raisins are toxic to dogs. Even small amounts can cause vomiting, lethargy and sudden kidney "
    "failure in some animals, and veterinarians recommend treatment as soon as ingestion is suspected.",
    "Search engines crawl the web, build an inverted index of the words on each page and score documents "
    "for a query with signals such as term frequency, link structure and click behaviour. Neural rankers "
    "then reorder the top candidates using learned representations.",
    "Grid-scale lithium-ion batteries smooth the output of wind and solar farms by storing surplus energy "
    "during the day and releasing it in the evening peak. Pumped hydro and flow batteries offer longer "
    "storage durations at lower cost per kilowatt hour.",
    "English descends from the West Germanic dialects brought to Britain by the Angles, Saxons and Jutes in "
    "the fifth century. Norse settlers and, after 1066, Norman French added thousands of words to its "
    "vocabulary.",
    "Regular aerobic exercise reduces symptoms of depression and anxiety in randomised trials, with effects "
    "comparable to medication for mild cases. Improved sleep, social contact and a sense of accomplishment "
    "are thought to contribute alongside biological changes.",
]


BATCH_SIZE = 8
EXTRA_K = 16  # slots also calibrated for (the recipe's document K), besides each side's default


def default_texts() -> tuple[list[str], list[str]]:
    """(queries, passages): the built-in texts, passages followed by long joined ones."""
    rotated = [" ".join(PASSAGES[i:] + PASSAGES[:i]) for i in range(len(PASSAGES))]
    return list(QUERIES), list(PASSAGES) + rotated


def read_texts(source: str | Path | Sequence[str]) -> tuple[list[str], list[str]]:
    """Calibration texts from a list of strings or a UTF-8 text file (one text per line); both sides see all."""
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"calibration texts: {path} is not a file (one text per line)")
        texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    else:
        texts = [str(t).strip() for t in source]
    texts = [t for t in texts if t]
    if not texts:
        raise ValueError("calibration texts: none given (empty file or list)")
    return texts, texts


def calibration_feeds(retriever, texts: tuple[list[str], list[str]] | None = None,
                      batch_size: int = BATCH_SIZE) -> list[dict[str, Any]]:
    """Graph feeds (the exported graph's inputs) for the calibration texts, both sides, in batches."""
    queries, passages = texts or default_texts()
    feeds = []
    for side, side_texts, default in (("query", queries, retriever.k_query), ("document", passages, retriever.k_doc)):
        # Batches alternate between the side's default K and EXTRA_K: the graph takes any K, and a K the
        # rounding never saw costs accuracy (MiniLM calibrated at K=4, run at K=16: 1.4e-2 vs 1.0e-2).
        ks = [default] if default == EXTRA_K else [default, EXTRA_K]
        for number, start in enumerate(range(0, len(side_texts), batch_size)):
            chunk = side_texts[start:start + batch_size]
            k = ks[number % len(ks)]
            batch = retriever.prompts.build(chunk, side, k)
            feeds.append({
                "input_ids": np.ascontiguousarray(batch.input_ids, dtype=np.int64),
                "attention_mask": np.ascontiguousarray(batch.attention_mask, dtype=np.int64),
                "slot_offsets": np.arange(k, dtype=np.int64),
                "content_ids": retriever.content.ids(chunk),
                "stop_truncation": np.array(bool(retriever.config.stop_truncation)),
            })
    return feeds
