"""A small built-in lexicon: lemmas, synonyms, hypernyms and attribute words for label matching.

Deliberately small and explicit: it covers common referring-expression nouns (RefCOCO-style
people, vehicles, animals, furniture, street objects) and the demo "shapes" world. Labels that
it cannot decide fall through to the optional embedding extra, else they fail closed.
"""

from __future__ import annotations

from difflib import SequenceMatcher
from functools import lru_cache
from typing import Literal

Relation = Literal["same", "synonym", "hypernym", "different", "unknown"]

# fmt: off
ARTICLES = frozenset({"a", "an", "the"})
DETERMINERS = ARTICLES | frozenset(
    {"this", "that", "these", "those", "another", "some", "any", "each", "every", "its", "his",
     "her", "their", "one", "two", "three", "four", "five", "several", "all", "both", "no", "my",
     "your", "our"}
)
# Colour words and the colour families each may be called (near-synonyms share a family, so
# 'maroon' does not contradict 'red' nor 'gold' 'yellow'); a plain colour is its own family.
_COLOR_NAMES = {
    "red": "red", "green": "green", "blue": "blue", "yellow": "yellow", "purple": "purple",
    "orange": "orange", "black": "black", "white": "white", "gray": "gray", "grey": "gray",
    "brown": "brown", "pink": "pink", "silver": "silver gray", "gold": "gold yellow",
    "golden": "gold yellow", "violet": "purple", "cyan": "cyan blue", "magenta": "pink purple",
    "beige": "beige tan brown white", "tan": "tan beige brown", "navy": "blue",
    "maroon": "maroon red brown", "teal": "teal blue green", "crimson": "red", "scarlet": "red",
    "burgundy": "maroon red", "turquoise": "teal blue green", "lavender": "purple",
    "lilac": "purple", "cream": "white beige", "ivory": "white", "khaki": "tan beige brown",
    "blond": "yellow", "blonde": "yellow",
}
COLOR_FAMILIES = {w: frozenset(f.split()) for w, f in _COLOR_NAMES.items()}
COLORS = frozenset(COLOR_FAMILIES)
# Words that shade the colour after them ('light blue', 'dark-brown'): part of the colour.
SHADES = frozenset({"light", "dark", "pale", "bright", "deep", "off", "pastel", "neon"})
# Words that are never the head noun: intensifiers, particles, fillers and adjectives a
# referring expression puts before or after its noun ('very top', 'right most', 'up front',
# 'short black hair', 'the wider one').
NON_NOUNS = frozenset(
    {"very", "most", "more", "up", "down", "off", "out", "away", "um", "sorry", "please",
     "short", "tall", "long", "wide", "narrow", "wider", "taller", "shorter", "longer",
     "narrower", "widest", "tallest", "shortest", "longest", "narrowest", "thin", "fat",
     "thinner", "thinnest", "dark", "darker", "darkest", "lighter", "lightest", "brighter",
     "pale", "bright"}
)
SIZE_CANON = {"small": "small", "little": "small", "tiny": "small", "smaller": "small",
              "smallest": "small", "large": "large", "big": "large", "huge": "large",
              "larger": "large", "largest": "large", "bigger": "large", "biggest": "large"}
POSITION_WORDS = frozenset(
    {"left", "right", "top", "bottom", "middle", "center", "centre", "upper", "lower", "front",
     "back", "leftmost", "rightmost", "topmost", "bottommost", "bottom-most", "top-most",
     "left-most", "right-most", "uppermost", "lowermost", "first", "second", "third", "fourth",
     "last", "nearest", "closest", "farthest", "furthest", "far", "near", "other", "only",
     "central", "side", "whole", "entire"}
)
# Words that end a noun chunk: prepositions, relative pronouns, verbs, conjunctions.
BOUNDARY_WORDS = frozenset(
    {"of", "in", "on", "at", "with", "without", "to", "from", "by", "near", "next", "beside",
     "besides", "behind", "above", "below", "under", "underneath", "beneath", "over", "between",
     "among", "across", "around", "inside", "outside", "within", "into", "onto", "against",
     "along", "toward", "towards", "that", "which", "who", "whose", "where", "while", "and",
     "or", "but", "is", "are", "was", "were", "be", "being", "been", "has", "have", "had", "as",
     "than", "closer", "nearer", "for", "so", "because", "it", "i", "there", "here", "not",
     "can", "could", "would", "should", "will", "must", "may", "might", "appears", "seems",
     "looks", "see", "sits", "stands", "lies", "located", "anywhere", "everywhere", "somewhere",
     "nowhere", "either", "too", "also", "again", "anymore", "now", "yet", "though", "however",
     "instead", "just", "clearly", "exactly", "then", "if", "when", "since", "do", "does", "did",
     "thats", "whos", "whats", "wich"}
)
# Nouns ending in -ing that are not verbs (an -ing word is otherwise a chunk boundary).
ING_NOUNS = frozenset(
    {"building", "ring", "king", "string", "painting", "ceiling", "clothing", "thing", "wing",
     "swing", "sling", "bedding", "railing", "awning", "spring", "something", "nothing",
     "anything", "everything", "drawing", "ping", "earring", "sibling", "pudding", "icing",
     "dumpling", "frosting", "lightning", "stuffing", "wedding", "morning", "evening",
     "opening", "crossing", "siding", "flooring", "lettering", "housing"}
)
# Heads that refer to no particular category: label matching only checks conflicts for them.
GENERIC_NOUNS = frozenset(
    {"one", "ones", "thing", "object", "item", "stuff", "something", "region", "area", "part",
     "target", "it", "entity", "instance", "element", "shape", "figure", "piece", "spot"}
)
# Imperative verbs that open GUI instructions ("open the menu", "download in apple app store"):
# the target is what follows. Those that are also common object nouns ('watch', 'book', 'star',
# 'sign', 'play', 'check') are stripped only before a determiner or a particle.
ACTION_VERBS = frozenset(
    {"open", "click", "tap", "press", "select", "choose", "view", "go", "visit", "download",
     "install", "search", "close", "show", "hide", "switch", "toggle", "enter", "type", "add",
     "remove", "delete", "edit", "change", "log", "login", "expand", "collapse", "unfold",
     "upvote", "downvote", "subscribe", "navigate", "jump", "scroll", "submit", "send", "reply",
     "filter", "sort", "create", "upload", "adjust", "access", "explore", "browse", "buy",
     "follow", "unstar", "learn", "read", "find", "get", "see", "use", "mute", "unmute",
     "minimize", "maximize", "refresh", "reload", "rate", "zoom", "pause", "start", "stop",
     "save", "copy", "share", "like", "watch", "book", "star", "sign", "play", "check", "set",
     "turn", "display", "comment", "listen", "return", "move", "drag", "print", "launch"}
)
AMBIGUOUS_VERBS = frozenset({"watch", "book", "star", "sign", "play", "check", "like", "set",
                             "turn", "display", "comment", "return", "move", "print", "copy",
                             "share", "save", "stop", "start", "rate", "use", "see", "get"})
VERB_PARTICLES = frozenset({"to", "in", "into", "up", "out", "for", "all"})
# GUI elements: a label that names the widget ('search button') rather than its referent.
UI_NOUNS = frozenset(
    {"button", "icon", "link", "tab", "menu", "field", "bar", "toolbar", "dropdown", "checkbox",
     "textbox", "input", "option", "entry", "widget", "control", "toggle", "slider", "logo",
     "banner", "header", "heading", "text", "title", "sidebar", "navigation", "panel", "dialog",
     "popup", "pop-up", "tooltip", "card", "thumbnail", "avatar", "arrow", "hyperlink", "switch",
     "searchbar", "image", "picture", "section", "list", "page", "box", "label", "caption"}
)
# Words of a think trace that are never objects in the scene.
NON_OBJECT_NOUNS = GENERIC_NOUNS | frozenset(
    {"image", "picture", "photo", "photograph", "scene", "answer", "question", "box",
     "bounding", "coordinates", "coordinate", "expression", "description", "user", "task",
     "position", "location", "side", "left", "right", "top", "bottom", "middle", "center",
     "corner", "edge", "frame", "bbox", "output", "json", "format", "way", "time", "case",
     "reference", "referring", "query", "request", "step", "list", "label", "number", "color",
     "colour", "size", "end", "view", "background", "foreground", "rest", "others", "other",
     "kind", "type", "lot", "bit", "pixel", "pixels", "same", "closest", "nearest", "first",
     "last", "second", "third", "target's", "match", "description's", "condition", "relation"}
)
WHOLE_IMAGE_PHRASES = (
    "whole image", "entire image", "whole picture", "entire picture", "full image",
    "whole photo", "entire photo", "whole scene", "entire scene", "the image", "the picture",
    "the photo", "everything", "background", "whole frame", "entire frame",
)

_IRREGULAR = {
    "men": "man", "women": "woman", "people": "person", "persons": "person",
    "children": "child", "kids": "kid", "mice": "mouse", "feet": "foot", "teeth": "tooth",
    "geese": "goose", "knives": "knife", "wives": "wife", "leaves": "leaf", "shelves": "shelf",
    "wolves": "wolf", "calves": "calf", "halves": "half", "loaves": "loaf", "scarves": "scarf",
    "buses": "bus", "gentlemen": "gentleman", "policemen": "policeman", "oxen": "ox",
    "cacti": "cactus", "fungi": "fungus", "dice": "die", "ladies": "lady", "sheep": "sheep",
    "fish": "fish", "deer": "deer", "series": "series", "species": "species", "glasses":
    "glasses", "pants": "pants", "jeans": "jeans", "scissors": "scissors", "shorts": "shorts",
    "skis": "ski", "hexagons": "hexagon", "boxes": "box", "foxes": "fox", "sandwiches":
    "sandwich", "benches": "bench", "couches": "couch", "dishes": "dish", "brushes": "brush",
    "glass": "glass", "grass": "grass", "dress": "dress", "bus": "bus", "lens": "lens",
    "cactus": "cactus", "octopus": "octopus", "virus": "virus", "canvas": "canvas",
    "gas": "gas", "tennis": "tennis", "mattress": "mattress", "compass": "compass",
}
_KEEP_S = ("ss", "us", "is", "os")


@lru_cache(maxsize=8192)
# fmt: on

def lemma(word: str) -> str:
    """Singular, lower-case form of a noun ('Buses' -> 'bus', 'boxes' -> 'box')."""
    w = word.lower().strip("'\"")
    if w in _IRREGULAR:
        return _IRREGULAR[w]
    if len(w) <= 3 or not w.endswith("s") or w.endswith(_KEEP_S):
        return w
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith(("ches", "shes", "sses", "xes", "zes")):
        return w[:-2]
    return w[:-1]


# Synonym sets: every member means the same category for label matching.
# fmt: off
_SYNSETS: tuple[frozenset[str], ...] = tuple(
    frozenset(s.split(","))
    for s in (
        "person,human,individual,pedestrian,someone,somebody",
        "man,guy,gentleman,male,dude,fellow,gent",
        "woman,lady,female,gal",
        "child,kid,toddler,youngster",
        "baby,infant",
        "boy,lad",
        "girl,lass",
        "player,athlete",
        "car,automobile,auto,sedan,hatchback",
        "bicycle,bike,cycle",
        "motorcycle,motorbike,scooter",
        "truck,lorry,pickup",
        "airplane,plane,aeroplane,aircraft,jet,airliner",
        "boat,ship,vessel",
        "tv,television,monitor,screen,display",
        "phone,cellphone,smartphone,mobile,cell phone",
        "laptop,notebook,computer",
        "sofa,couch,settee",
        "cup,mug",
        "bag,handbag,purse,backpack",
        "hat,cap,beanie",
        "shirt,tee,t-shirt,blouse",
        "pole,post,pillar,column,mast,stake,rod,lamppost,signpost",
        "sign,signboard,placard,signage",
        "road,street,roadway",
        "sidewalk,pavement,footpath",
        "hydrant,fire hydrant",
        "traffic light,stoplight,traffic signal",
        "trash can,bin,garbage can,dustbin,wastebasket",
        "umbrella,parasol",
        "table,desk",
        "chair,seat,stool",
        "dog,puppy,hound,pup",
        "cat,kitten,kitty",
        "horse,pony",
        "cow,cattle,bull,calf",
        "plant,houseplant,potted plant",
        "tree,trees",
        "doughnut,donut",
        "teddy bear,teddy,bear",
        "circle,disk,disc",
        "square",
        "triangle",
        "star",
        "hexagon",
    )
)
# Hypernyms: a label naming the parent of the expression's noun (or the reverse) matches.
_PARENTS: dict[str, frozenset[str]] = {}
for _parent, _children in {
    "person": "man,woman,child,boy,girl,baby,player,skier,surfer,skateboarder,rider,driver,"
    "worker,officer,policeman,chef,teenager,adult,kid,guy,lady,pedestrian,catcher,pitcher,"
    "batter,umpire,referee,cyclist,biker,runner,student,teacher,doctor,nurse,soldier",
    "animal": "dog,cat,horse,cow,sheep,bird,elephant,bear,zebra,giraffe,pig,goat,duck,deer,"
    "lion,tiger,monkey,mouse,rabbit,fox,wolf,chicken,goose,puppy,kitten,pony",
    "vehicle": "car,truck,bus,bicycle,motorcycle,train,van,taxi,airplane,boat,tractor,jeep,"
    "suv,ambulance,scooter,tram",
    "furniture": "chair,table,sofa,bed,bench,desk,shelf,cabinet,dresser,stool,couch",
    "food": "pizza,sandwich,cake,donut,doughnut,apple,banana,orange,carrot,broccoli,hotdog,"
    "bread,salad,burger",
    "fruit": "apple,banana,orange,pear,grape,lemon,strawberry,peach",
    "shape": "circle,square,triangle,star,hexagon,rectangle,polygon,pentagon,oval",
    "polygon": "square,triangle,hexagon,rectangle,pentagon",
    "clothing": "shirt,jacket,coat,dress,pants,jeans,hat,shoe,sock,skirt,sweater,hoodie,tie",
    "container": "cup,bottle,bowl,jar,box,bag,vase,basket,glass,mug,trash can",
    "device": "phone,laptop,tv,remote,keyboard,mouse,camera,tablet",
    "structure": "pole,building,tower,bridge,fence,wall,house",
}.items():
    for _child in _children.split(","):
        _PARENTS[_child] = _PARENTS.get(_child, frozenset()) | {_parent}

_SYN_INDEX: dict[str, frozenset[int]] = {}
for _i, _s in enumerate(_SYNSETS):
    for _w in _s:
        _SYN_INDEX[_w] = _SYN_INDEX.get(_w, frozenset()) | {_i}

KNOWN_NOUNS: frozenset[str] = frozenset(_SYN_INDEX) | frozenset(_PARENTS) | frozenset(
    p for ps in _PARENTS.values() for p in ps
)


# fmt: on


def known(noun: str) -> bool:
    """Whether the lexicon knows this (lemmatised) noun or noun phrase."""
    return noun in KNOWN_NOUNS


def _ancestors(noun: str) -> frozenset[str]:
    """All hypernyms of a noun, including those of its synonyms, transitively."""
    seen: set[str] = set()
    todo = [noun, *synonyms(noun)]
    while todo:
        w = todo.pop()
        for p in _PARENTS.get(w, ()):
            if p not in seen:
                seen.add(p)
                seen.update(synonyms(p))  # 'individual' is a 'person', the parent of 'man'
                todo.append(p)
                todo.extend(synonyms(p))
    return frozenset(seen)


def synonyms(noun: str) -> frozenset[str]:
    """Every word that shares a synonym set with `noun` (excluding the noun itself)."""
    out: set[str] = set()
    for i in _SYN_INDEX.get(noun, ()):
        out |= _SYNSETS[i]
    out.discard(noun)
    return frozenset(out)


def spelling_variant(a: str, b: str) -> bool:
    """Whether two nouns are one word spelt two ways ('cupake'/'cupcake', 'suace'/'sauce').

    People's expressions keep their typos while the model's label corrects them. Both words have
    at least 4 letters and the same first letter, at most one is a lexicon noun (two known nouns
    are two categories: 'shirt'/'skirt'), and difflib's similarity ratio is at least 0.8.
    """
    if a == b or len(a) < 4 or len(b) < 4 or a[0] != b[0] or (known(a) and known(b)):
        return False
    return SequenceMatcher(None, a, b).ratio() >= 0.8


@lru_cache(maxsize=8192)
def relation(a: str, b: str) -> Relation:
    """How two lemmatised nouns relate: same, synonym, hypernym (either way), different, unknown.

    'different' is only claimed when both nouns are known to the lexicon; otherwise 'unknown'.
    A spelling variant of the other word or of one of its synonyms is a synonym.
    """
    if a == b:
        return "same"
    if b in synonyms(a):
        return "synonym"
    if b in _ancestors(a) or a in _ancestors(b):
        return "hypernym"
    if known(a) and known(b):
        return "different"
    if any(spelling_variant(x, y) for x in (a, *synonyms(a)) for y in (b, *synonyms(b))):
        return "synonym"
    return "unknown"


def color_family(word: str) -> frozenset[str]:
    """The colour families a word names: 'maroon' {maroon, red, brown}, 'pinkish' {pink},
    'light-blue' {blue}, 'blue-green' {blue, green}; empty when it names no colour.

    Example:
        >>> sorted(color_family("pinkish-purple")), sorted(color_family("dark-haired"))
        (['pink', 'purple'], [])
    """
    if word in COLOR_FAMILIES:
        return COLOR_FAMILIES[word]
    if "-" in word:
        parts = [p for p in word.split("-") if p not in SHADES]
        families = [color_family(p) for p in parts]
        if parts and all(families):
            return frozenset().union(*families)
        return frozenset()
    for ending in ("dish", "ish"):  # reddish, bluish, greyish, yellowish
        stem = word.removesuffix(ending)
        if stem != word and (stem in COLOR_FAMILIES or stem + "e" in COLOR_FAMILIES):
            return COLOR_FAMILIES.get(stem) or COLOR_FAMILIES[stem + "e"]
    return frozenset()


def canon_size(word: str) -> str | None:
    """'small' or 'large' for size words, else None."""
    return SIZE_CANON.get(word)
