"""Data stage: the topic vocabularies that the sample generator (recsys.data.sample) draws from.

Pure data. 16 topics x 3 subtopics, each subtopic with its own nouns; the GENERIC_* words and the
templates are shared by every topic, so item text carries noise as well as signal.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Subtopic:
    name: str  # the sub-category label, e.g. "Baking"
    nouns: tuple[str, ...]
    interest: str  # how a user describes this taste in a profile


@dataclass(frozen=True)
class Topic:
    name: str  # the top-level category label, e.g. "Cooking"
    kinds: tuple[str, ...]  # what an item of this topic is: "cookbook", "album", ...
    audience: tuple[str, ...]
    adjectives: tuple[str, ...]
    subtopics: tuple[Subtopic, ...]  # exactly SUBTOPICS_PER_TOPIC (tested)


SUBTOPICS_PER_TOPIC = 3


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(";"))


def _topic(name: str, kinds: str, audience: str, adjectives: str, *subtopics: str) -> Topic:
    """Each subtopic is written "Name: noun; noun; ... = what a user would call it"."""
    subs = []
    for spec in subtopics:
        label, rest = spec.split(":", 1)
        nouns, interest = rest.split("=")
        subs.append(Subtopic(label.strip(), _split(nouns), interest.strip()))
    return Topic(name, _split(kinds), _split(audience), _split(adjectives), tuple(subs))


# fmt: off
TOPICS: tuple[Topic, ...] = (
    _topic("Cooking", "cookbook; recipe collection; cooking course", "home cooks; busy families",
           "slow-cooked; spicy; rustic; seasonal; smoky; homemade",
           "Baking: sourdough; pastry; croissants; layer cake; bread dough; pie crust; cookies"
           " = baking bread",
           "Asian Cuisine: dumplings; ramen; curry; stir-fry; kimchi; dim sum; noodles"
           " = spicy Asian food",
           "Grilling: barbecue; brisket; smoker; marinade; grilled vegetables; ribs; charcoal"
           " = barbecue and grilling"),
    _topic("Hiking", "trail guide; field guide; hiking handbook",
           "weekend hikers; outdoor families",
           "alpine; rugged; remote; scenic; wild; misty",
           "Day Hikes: trail; waterfall; trailhead; picnic; forest loop; viewpoint; boots"
           " = day hikes in the forest",
           "Backpacking: backpack; tent; campsite; water filter; thru-hike; sleeping bag;"
           " camp stove = long backpacking trips",
           "Mountaineering: summit; ridge; crampons; glacier; ice axe; rope team; high pass"
           " = climbing mountains"),
    _topic("Jazz", "album; live recording; jazz anthology", "jazz fans; late-night listeners",
           "smoky; sultry; cool; improvised; bluesy; late-night",
           "Bebop: saxophone; quartet; bebop; solo; upright bass; chord changes; trumpet"
           " = bebop and saxophone solos",
           "Vocal Jazz: ballads; singer; standards; torch songs; scat; piano trio; love songs"
           " = jazz singers",
           "Big Band: swing; horn section; orchestra; dance hall; trombone; arrangements; brass"
           " = swing and big band music"),
    _topic("Science Fiction", "novel; short story collection; novella",
           "sci-fi readers; fans of big ideas",
           "interstellar; dystopian; galactic; mind-bending; alien; uncanny",
           "Space Opera: starship; empire; galaxy; fleet; exoplanet; first contact; colony"
           " = space opera",
           "Cyberpunk: android; hackers; megacity; implants; artificial intelligence; cyborg; neon"
           " = cyberpunk stories",
           "Time Travel: time machine; paradox; timeline; future; past; alternate history; loop"
           " = time travel novels"),
    _topic("Gardening", "gardening guide; planting handbook; garden journal",
           "gardeners; allotment growers", "lush; organic; blooming; shady; fragrant; thriving",
           "Vegetables: tomatoes; compost; raised beds; seedlings; potatoes; allotment;"
           " vegetable patch = growing vegetables",
           "Flowers: roses; bulbs; tulips; pruning; perennials; borders; dahlias"
           " = flower gardens",
           "Houseplants: succulents; ferns; pots; orchids; repotting; cuttings; terrarium"
           " = houseplants"),
    _topic("Photography", "photo book; photography course; camera guide",
           "photographers; hobbyist shooters",
           "luminous; intimate; monochrome; cinematic; sharp; golden-hour",
           "Landscape: landscapes; tripod; wide-angle lens; sunrise; long exposure; mountains;"
           " filters = landscape photography",
           "Portrait: portraits; studio lighting; faces; headshots; softbox; models; 85mm lens"
           " = taking portraits",
           "Street Photography: street scenes; candid moments; city streets; film camera;"
           " black and white; crowds; alleys = street photography"),
    _topic("History", "history book; biography; documentary", "history buffs; curious readers",
           "ancient; imperial; forgotten; revolutionary; epic; turbulent",
           "Ancient History: pharaoh; rome; pyramids; senate; gladiators; greek city-states;"
           " emperor = ancient Rome and Egypt",
           "Medieval: castle; knights; crusade; cathedral; plague; kingdom; monastery"
           " = medieval castles",
           "World Wars: trenches; battle; resistance; generals; home front; treaties; submarine"
           " = the world wars"),
    _topic("Fitness", "workout program; training plan; fitness guide",
           "athletes; beginners getting in shape",
           "intense; functional; explosive; steady; mindful; lean",
           "Strength: squats; deadlift; kettlebell; barbell; protein; push-ups; muscle"
           " = strength training",
           "Running: marathon; intervals; sprints; trail runs; pace; 10k; running shoes"
           " = running marathons",
           "Yoga: yoga flow; stretching; breathing; mobility; meditation; poses; balance = yoga"),
    _topic("Travel", "travel guide; travelogue; city guide", "travellers; backpackers on a budget",
           "sunny; hidden; bustling; coastal; faraway; unforgettable",
           "City Breaks: old town; museums; cafes; metro; capital; boutique hotel; markets"
           " = city breaks",
           "Road Trips: road trip; highway; camper van; motel; national park; gas station; route"
           " = road trips",
           "Islands: island; beach; lagoon; snorkelling; ferry; coral reef; hammock"
           " = island hopping"),
    _topic("Programming", "programming book; coding course; developer handbook",
           "developers; students learning to code",
           "scalable; concurrent; functional; clean; typed; open-source",
           "Python: python; pandas; notebooks; scripts; packaging; type hints; data analysis"
           " = writing Python",
           "Web Development: web server; javascript; css; api; frontend; databases; react"
           " = web development",
           "Algorithms: algorithms; data structures; graphs; sorting; dynamic programming;"
           " complexity; trees = algorithms and puzzles"),
    _topic("Astronomy", "astronomy guide; star atlas; science documentary",
           "stargazers; amateur astronomers", "cosmic; celestial; distant; dark-sky; stellar; vast",
           "Stargazing: telescope; constellations; star chart; meteor shower; dark skies;"
           " binoculars; moon = stargazing with my telescope",
           "Planets: saturn; mars; jupiter; rovers; moons; solar system; rings = the planets",
           "Cosmology: black hole; big bang; dark matter; galaxies; supernova; quasars; gravity"
           " = cosmology and black holes"),
    _topic("Painting", "art book; painting course; sketchbook guide", "painters; art lovers",
           "vivid; dreamy; abstract; delicate; bold; expressive",
           "Watercolour: watercolour; washes; paper; brushes; botanical; pigments; sketchbook"
           " = watercolours",
           "Oil Painting: oil paint; canvas; palette knife; impasto; still life; easel; glazes"
           " = oil painting",
           "Art History: renaissance; impressionists; museums; masterpieces; frescoes; galleries;"
           " old masters = visiting art galleries"),
    _topic("Mystery", "mystery novel; crime thriller; detective series",
           "crime readers; puzzle lovers",
           "gripping; chilling; twisty; suspenseful; cunning; shadowy",
           "Detective: detective; inspector; clues; alibi; suspect; interrogation; case file"
           " = detective novels",
           "Noir: private eye; gangsters; rain-soaked city; femme fatale; bourbon; corruption;"
           " nightclub = noir crime",
           "Cozy Mystery: village; tea shop; amateur sleuth; manor house; poison; cats; bakery"
           " = cozy mysteries"),
    _topic("Personal Finance", "money guide; finance course; investing handbook",
           "savers; first-time investors",
           "thrifty; steady; long-term; passive; disciplined; smart",
           "Investing: index funds; stocks; dividends; portfolio; bonds; market crash;"
           " compound interest = investing in index funds",
           "Budgeting: budget; savings; debt; frugality; spreadsheets; credit card; side hustle"
           " = budgeting",
           "Retirement: pension; retirement account; annuities; early retirement; withdrawal rate;"
           " estate; taxes = planning for retirement"),
    _topic("Woodworking", "woodworking manual; project book; workshop course",
           "woodworkers; DIY makers", "handcrafted; sturdy; reclaimed; oak; heirloom; rustic",
           "Furniture: table; chair; cabinet; bookshelf; joinery; walnut; workbench"
           " = building furniture",
           "Carving: spoon carving; whittling; carving knife; green wood; bowls; relief carving;"
           " basswood = carving spoons",
           "Hand Tools: chisel; hand plane; dovetail saw; sharpening; marking gauge; mallet;"
           " hand saw = hand tools"),
    _topic("Birdwatching", "bird guide; field notebook; nature documentary",
           "birders; nature lovers", "feathered; migratory; rare; elusive; early-morning; graceful",
           "Songbirds: warbler; birdsong; finches; feeders; robin; dawn chorus; nest box"
           " = songbirds at dawn",
           "Birds of Prey: hawk; owl; falcon; eagle; talons; hunting; soaring = birds of prey",
           "Wetlands: heron; wetlands; ducks; estuary; waders; marsh; kingfisher"
           " = wetland birds"),
)
# fmt: off
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
    "notes on {noun}", "everything {noun}", "in praise of {noun}",
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
# Item styles: users prefer some over others, and most descriptions say which one an item has.
STYLES: tuple[tuple[str, ...], ...] = (
    ("written for complete beginners.", "no experience needed.", "a gentle introduction."),
    ("an advanced, in-depth treatment.", "assumes you know the basics.", "for old hands."),
    ("lavishly illustrated throughout.", "full of photographs and diagrams.", "a visual feast."),
    ("short chapters for a coffee break.", "a quick, bite-sized format.", "done in an afternoon."),
)
PROFILE_TEMPLATES: tuple[str, ...] = (
    "I love {a}.", "Big fan of {a}; lately getting into {b}.", "Into {a} and {b}.",
    "Mostly here for {a}.", "Weekends are for {a}. Also enjoy {b}.",
    "Hobbies: {a}, {b}.",
)
# fmt: on
