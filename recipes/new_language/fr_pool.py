"""Write avatarsync/data/text/fr.txt: the French sentence pool of the procedural corpus.

Simple present-tense sentences (subject + verb phrase + complement) drawn without repetition from
combinatorial templates written for this project, plus a few hand-written ones; chosen so that the
French phones espeak-ng speaks all occur (nasal vowels an/on/in/un, front rounded u/eu/oeu, the
uvular r, the glide of "nuit", gn, ch, j). Deterministic: the same file every run.

    python recipes/new_language/fr_pool.py [--out avatarsync/data/text/fr.txt] [--count 320]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

SUBJECTS = [
    "Le petit garçon", "Ma grand-mère", "Notre voisin", "La jeune fille", "Mon frère", "Le vieux pêcheur",
    "Cette chanteuse", "Le boulanger", "Une infirmière", "Le chat noir", "Ton oncle", "La directrice",
    "Un enfant curieux", "Le facteur", "Ma cousine", "Le médecin du village", "Une étudiante", "Le jardinier",
    "Mon meilleur ami", "La maîtresse d'école", "Le chien de Julien", "Un musicien", "Sa sœur aînée",
    "Le cuisinier", "Une vieille dame",
]
VERB_PHRASES = [
    "mange une pomme rouge", "lit un livre ancien", "prépare du pain chaud", "cherche ses lunettes",
    "boit un café brûlant", "regarde la lune", "écrit une longue lettre", "chante une chanson douce",
    "ouvre la fenêtre", "range la cuisine", "achète des fleurs jaunes", "peint un grand tableau",
    "attend le train", "répare le vélo bleu", "nettoie le jardin", "porte un chapeau gris",
    "écoute la radio", "joue du piano", "cueille des champignons", "raconte une histoire drôle",
    "dessine un mouton", "goûte une soupe de légumes", "plie les vêtements", "promène le chien",
    "trouve une clé perdue", "remplit un seau d'eau", "compte les pièces", "lave la voiture",
]
COMPLEMENTS = [
    "dans la cuisine", "près de la rivière", "chaque matin", "avant le dîner", "sous la pluie",
    "au bord de la mer", "pendant la nuit", "avec beaucoup de soin", "après le déjeuner", "en silence",
    "au milieu du marché", "devant la maison", "tous les dimanches", "sans dire un mot", "dans le salon",
    "à côté de la gare", "au fond du jardin", "ce soir", "depuis une heure", "sur la terrasse",
    "avant de partir", "à la campagne", "en plein hiver", "un peu plus tard",
]
FIXED = [
    "Il fait beau aujourd'hui, allons nous promener.", "Le vent souffle fort sur la montagne.",
    "Nous partons en vacances au mois de juin.", "Où est la bibliothèque municipale?",
    "Les oiseaux chantent dès le lever du soleil.", "Je voudrais un croissant et un jus d'orange.",
    "Elle habite une maison blanche près du pont.", "Le bruit de la ville ne cesse jamais.",
    "Tu peux fermer la porte, s'il te plaît?", "Un brouillard épais couvre la vallée ce matin.",
    "Les enfants jouent dans la cour de l'école.", "Nous avons mangé une délicieuse tarte aux pommes.",
    "Le train de nuit arrive à Lyon demain.", "Quelle heure est-il maintenant?",
    "Mon grand-père cultive des tomates et des oignons.", "La neige tombe doucement sur les toits.",
    "Ils construisent un nouveau pont sur le fleuve.", "Le parfum des roses remplit le jardin.",
    "Pourquoi ton cousin est-il si pressé?", "Un vieux moulin tourne au bord du ruisseau.",
    "Le musée ouvre ses portes à neuf heures.", "Les feuilles jaunes tombent en automne.",
    "Je cherche un appartement lumineux en ville.", "La montagne est couverte de sapins verts.",
    "Nous buvons du thé chaud près du feu.", "Le pêcheur rentre au port avec son bateau.",
    "Cette rue étroite mène à la place du marché.", "Les gens attendent le bus sous la pluie.",
    "Le ciel devient rose au coucher du soleil.", "Un lapin brun saute dans l'herbe humide.",
    "Le boulanger ouvre sa boutique très tôt.", "Elle a oublié son parapluie dans le métro.",
]


def make_pool(count: int = 320, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    combos = [(s, v, c) for s in SUBJECTS for v in VERB_PHRASES for c in COMPLEMENTS]
    rng.shuffle(combos)
    # spread the parts evenly: take combos round-robin so every subject and verb recurs a similar number of times
    used_s: dict[str, int] = {}
    used_v: dict[str, int] = {}
    out: list[str] = []
    seen = set()
    need = count - len(FIXED)
    cap_s = -(-need // len(SUBJECTS))
    cap_v = -(-need // len(VERB_PHRASES))
    for s, v, c in combos:
        if len(out) >= need:
            break
        if used_s.get(s, 0) >= cap_s or used_v.get(v, 0) >= cap_v or (s, v) in seen:
            continue
        seen.add((s, v))
        used_s[s] = used_s.get(s, 0) + 1
        used_v[v] = used_v.get(v, 0) + 1
        out.append(f"{s} {v} {c}.")
    pool = out + FIXED
    rng.shuffle(pool)
    return pool


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "avatarsync" / "data" / "text" / "fr.txt"))
    p.add_argument("--count", type=int, default=320)
    args = p.parse_args()
    pool = make_pool(args.count)
    Path(args.out).write_text("\n".join(pool) + "\n", encoding="utf-8")
    print(f"wrote {len(pool)} sentences to {args.out}")


if __name__ == "__main__":
    main()
