"""Data stage: the topic vocabularies the synthetic sample generator (recsys.data.sample) draws from.

Pure data, no logic. Each topic has its own words; GENERIC_* words are shared by every topic, so
item text carries noise as well as signal, as real catalogs do.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    name: str  # the top-level category label, e.g. "Cooking"
    kinds: tuple[str, ...]  # what an item of this topic is: "cookbook", "album", ...
    audience: tuple[str, ...]
    subcategories: tuple[str, ...]
    adjectives: tuple[str, ...]
    nouns: tuple[str, ...]
    interests: tuple[str, ...]  # how users describe the taste in their profile


def _topic(name: str, kinds: str, audience: str, subs: str, adjs: str, nouns: str, likes: str):
    def split(text: str) -> tuple[str, ...]:
        return tuple(part.strip() for part in text.split(";"))

    return Topic(name, split(kinds), split(audience), split(subs), split(adjs), split(nouns),
                 split(likes))  # fmt: skip


# fmt: off
TOPICS: tuple[Topic, ...] = (
    _topic("Cooking", "cookbook; recipe collection; cooking course",
           "home cooks; busy families", "Recipes; Weeknight Meals; Regional Cuisine",
           "slow-cooked; spicy; rustic; seasonal; smoky; homemade",
           "braise; risotto; curry; broth; spice blend; skillet; dumplings; stir-fry; pantry; "
           "noodles; roast chicken; knife skills; stew; marinade",
           "cooking at home; trying new recipes; spicy food; making dumplings from scratch"),
    _topic("Hiking", "trail guide; field guide; hiking handbook",
           "weekend hikers; backpackers", "Trails; Backpacking; Mountains",
           "alpine; rugged; remote; scenic; high-altitude; wild",
           "trail; summit; ridge; backpack; switchbacks; campsite; trailhead; canyon; boots; "
           "waterfall; pass; wilderness; tent; map and compass",
           "long mountain hikes; backpacking trips; camping under the stars; trail running"),
    _topic("Jazz", "album; live recording; jazz anthology",
           "jazz fans; late-night listeners", "Bebop; Vocal Jazz; Big Band",
           "smoky; swinging; cool; improvised; bluesy; late-night",
           "saxophone; trumpet; quartet; standards; bebop; swing; upright bass; piano trio; "
           "ballads; big band; club set; brushes; solo; groove",
           "jazz records; saxophone solos; live jazz clubs; bebop and swing"),
    _topic("Science Fiction", "novel; short story collection; space opera",
           "sci-fi readers; fans of big ideas", "Space Opera; Cyberpunk; Time Travel",
           "interstellar; dystopian; galactic; futuristic; alien; uncanny",
           "starship; colony; android; wormhole; empire; first contact; time machine; "
           "artificial intelligence; generation ship; mars; cyborg; galaxy; robots; exoplanet",
           "science fiction novels; space opera; stories about robots and AI; time travel"),
    _topic("Gardening", "gardening guide; planting handbook; garden journal",
           "gardeners; allotment growers", "Vegetables; Flowers; Houseplants",
           "lush; organic; blooming; perennial; shady; fragrant",
           "tomatoes; compost; seedlings; raised beds; roses; pruning; soil; herbs; bulbs; "
           "greenhouse; succulents; mulch; orchard; vegetable patch",
           "gardening; growing vegetables; houseplants; composting"),
    _topic("Photography", "photo book; photography course; camera guide",
           "photographers; hobbyist shooters", "Landscape; Portrait; Street Photography",
           "luminous; candid; monochrome; cinematic; sharp; golden-hour",
           "lens; aperture; exposure; portraits; film camera; darkroom; composition; tripod; "
           "street scenes; light; shutter speed; prints; landscapes; black and white",
           "photography; film cameras; street photography; taking portraits"),
    _topic("History", "history book; biography; documentary",
           "history buffs; curious readers", "Ancient History; Wars; Biography",
           "ancient; medieval; imperial; forgotten; revolutionary; epic",
           "empire; dynasty; castle; revolution; archive; pharaoh; crusade; kingdom; battle; "
           "trade routes; cathedral; rome; silk road; emperor",
           "history; ancient Rome; medieval castles; biographies of great leaders"),
    _topic("Fitness", "workout program; training plan; fitness guide",
           "athletes; beginners getting in shape", "Strength; Running; Yoga",
           "intense; functional; explosive; steady; mindful; lean",
           "squats; kettlebell; marathon; mobility; intervals; core; deadlift; yoga flow; "
           "endurance; stretching; sprints; protein; recovery; push-ups",
           "working out; running marathons; strength training; yoga"),
    _topic("Travel", "travel guide; travelogue; city guide",
           "travellers; backpackers on a budget", "City Breaks; Road Trips; Islands",
           "sunny; hidden; bustling; coastal; faraway; unforgettable",
           "island; road trip; old town; harbour; street food; train journey; beach; "
           "passport; market; hostel; lagoon; border crossing; capital; villages",
           "travelling; road trips; exploring new cities; island hopping"),
    _topic("Programming", "programming book; coding course; developer handbook",
           "developers; students learning to code", "Python; Web Development; Algorithms",
           "scalable; concurrent; functional; clean; typed; open-source",
           "python; compiler; algorithms; database; unit tests; api; refactoring; rust; "
           "data structures; web server; debugging; git; concurrency; machine learning",
           "programming; writing Python; open-source software; learning algorithms"),
    _topic("Astronomy", "astronomy guide; star atlas; science documentary",
           "stargazers; amateur astronomers", "Stargazing; Planets; Cosmology",
           "cosmic; celestial; distant; luminous; dark-sky; stellar",
           "telescope; nebula; constellations; black hole; comet; eclipse; moon; saturn; "
           "supernova; galaxies; observatory; meteor shower; star chart; big bang",
           "stargazing; my telescope; astronomy; watching meteor showers"),
    _topic("Painting", "art book; painting course; sketchbook guide",
           "painters; art lovers", "Watercolour; Oil Painting; Art History",
           "vivid; impressionist; abstract; delicate; bold; expressive",
           "watercolour; canvas; brushwork; palette; oil paint; still life; portrait; "
           "colour theory; gallery; sketching; acrylics; easel; landscape painting; pigments",
           "painting; watercolours; visiting art galleries; sketching outdoors"),
    _topic("Mystery", "mystery novel; crime thriller; detective series",
           "crime readers; puzzle lovers", "Detective; Noir; Cozy Mystery",
           "gripping; chilling; twisty; noir; suspenseful; cunning",
           "detective; murder; alibi; inspector; suspect; clues; poison; locked room; "
           "heist; witness; manor house; cold case; confession; private eye",
           "mystery novels; detective stories; crime thrillers; whodunits"),
    _topic("Personal Finance", "money guide; finance course; investing handbook",
           "savers; first-time investors", "Investing; Budgeting; Retirement",
           "frugal; steady; long-term; passive; disciplined; debt-free",
           "budget; index funds; savings; pension; mortgage; compound interest; stocks; "
           "emergency fund; taxes; dividends; side hustle; portfolio; credit score; frugality",
           "personal finance; investing in index funds; budgeting; saving for retirement"),
    _topic("Woodworking", "woodworking manual; project book; workshop course",
           "woodworkers; DIY makers", "Furniture; Carving; Hand Tools",
           "handcrafted; sturdy; reclaimed; oak; joinery-rich; heirloom",
           "chisel; dovetail; workbench; lathe; hand plane; walnut; cabinet; sawdust; "
           "joinery; spoon carving; table saw; finish; chair; bookshelf",
           "woodworking; building furniture; carving spoons; my home workshop"),
    _topic("Birdwatching", "bird guide; field notebook; nature documentary",
           "birders; nature lovers", "Songbirds; Birds of Prey; Wetlands",
           "feathered; migratory; rare; wetland; dawn; elusive",
           "warbler; binoculars; owl; heron; migration; nest; birdsong; hawk; wetlands; "
           "field marks; woodpecker; feeders; estuary; flock",
           "birdwatching; spotting rare birds; birdsong at dawn; nature walks"),
)

GENERIC_TITLE_SUFFIXES: tuple[str, ...] = (
    "Handbook", "Basics", "Stories", "Notes", "Companion", "Essentials", "Journal", "Collection",
    "Masterclass", "Unplugged", "Revisited", "Diaries",
)
GENERIC_ADJECTIVES: tuple[str, ...] = (
    "engaging", "accessible", "thorough", "beautifully produced", "practical", "charming",
    "ambitious", "generous", "concise", "warm",
)
# Title templates: {adj}/{noun}/{noun2} from a topic, {suffix} generic. Title-cased after filling.
TITLE_TEMPLATES: tuple[str, ...] = (
    "the {adj} {noun}", "{noun} {suffix}", "{adj} {noun} {suffix}", "a season of {noun}",
    "{noun} and {noun2}", "the {noun} {suffix}", "{adj} {noun}: {noun2}",
    "notes on {noun}", "everything {noun}", "{noun}, {adj}",
)
# Description sentences; the first one names the kind of item.
OPENING_TEMPLATES: tuple[str, ...] = (
    "a {gadj} {kind} about {noun} and {noun2}.",
    "this {kind} explores {noun}, {noun2} and {noun3}.",
    "a {gadj} {kind} for {audience}, built around {noun}.",
    "a {adj} {kind} on {noun}.",
)
MORE_TEMPLATES: tuple[str, ...] = (
    "covers {noun} and {noun2} for {audience}.",
    "perfect for anyone curious about {noun}.",
    "includes practical tips on {noun}, with a chapter on {noun2}.",
    "from {noun} to {noun2}, every part is {gadj}.",
    "expect {adj} moments and plenty of {noun}.",
    "a favourite of {audience}.",
)
PROFILE_TEMPLATES: tuple[str, ...] = (
    "I love {a}.", "Big fan of {a}; lately getting into {b}.", "Into {a} and {b}.",
    "Mostly here for {a}.", "Weekends are for {a}. Also enjoy {b}.",
    "Hobbies: {a}, {b}.",
)
# fmt: on
