"""A TREC-style question bank for the OOLONG tasks: templates and fillers per coarse label.

Every question is one template with its ``{slots}`` filled from :data:`FILLERS`.
The six labels are TREC's coarse classes as OOLONG names them. Templates are
written so that a careful reader can tell the label from the question alone
("How many ..." asks for a numeric value, "Who ..." for a human being, "Where
..." for a location, "What does X stand for" for an abbreviation, ...), and
no question can be produced by templates of two different labels (a test
checks this).
"""

from __future__ import annotations

import random
import string

from ._words import word_list

__all__ = ["FILLERS", "LABELS", "TEMPLATES", "make_question", "template_slots"]

#: OOLONG's names for the TREC coarse labels, in OOLONG's order.
LABELS: tuple[str, ...] = (
    "description and abstract concept",
    "entity",
    "human being",
    "numeric value",
    "location",
    "abbreviation",
)

TEMPLATES: dict[str, tuple[str, ...]] = {
    "abbreviation": (
        "What does {acronym} stand for?",
        "What is the full form of {acronym}?",
        "What do the letters {acronym} stand for?",
        "{acronym} is an acronym for what?",
        "What is the expansion of the acronym {acronym}?",
        "What is the abbreviation for the {organization}?",
        "How is the {organization} usually abbreviated?",
        "What is the acronym of the {organization}?",
    ),
    "description and abstract concept": (
        "What is the definition of {concept}?",
        "What does the word {word} mean?",
        "Why {phenomenon}?",
        "How does {device} work?",
        "What is the origin of {custom}?",
        "How do you {activity}?",
        "What is the difference between {pair}?",
        "What causes {cause_of}?",
        "What is the meaning of {symbol}?",
    ),
    "entity": (
        "What kind of animal is {animal}?",
        "What type of musical instrument is {instrument}?",
        "What color is {colored_thing}?",
        "What sport is played with a {equipment}?",
        "What is the main ingredient of {dish}?",
        "Which breed of dog {dog_trait}?",
        "What is the best-selling {product_kind} of all time?",
        "What currency is used in {country}?",
        "What kind of tree produces {tree_product}?",
    ),
    "human being": (
        "Who invented the {invention}?",
        "Who wrote {book}?",
        "Who painted {painting}?",
        "Who was the first person to {achievement}?",
        "Who discovered {discovery}?",
        "Who composed {composition}?",
        "Who directed the film {film}?",
        "Which scientist {scientist_deed}?",
        "Who was the {ordinal} president of {republic}?",
    ),
    "location": (
        "Where is {landmark} located?",
        "What is the capital of {country}?",
        "Which country is home to {landmark}?",
        "In which city was {famous} born?",
        "Where did {famous} die?",
        "What is the {geo_superlative}?",
        "Where can you find {wild_animal} in the wild?",
        "Which US state is {us_city} in?",
    ),
    "numeric value": (
        "How many {count_thing}?",
        "How tall is {tall_thing}?",
        "When was {institution} founded?",
        "In what year did {event}?",
        "How far is {distance_pair}?",
        "How much does {heavy_thing} weigh?",
        "What is the population of {country}?",
        "When was {famous} born?",
        "What is the boiling point of {substance}?",
        "How long does it take for {duration_thing}?",
    ),
}


def _split(text: str) -> tuple[str, ...]:
    return word_list(text, "|")


FILLERS: dict[str, tuple[str, ...]] = {
    "acronym": _split(
        """NASA | UNESCO | NATO | DNA | RAM | SCUBA | RADAR | LASER | FBI | UNICEF | OPEC | ASCII |
        HTML | GPS | LED | MRI | ATM | CPU | URL | SWAT | ISBN | BBC | ESPN | RSVP | NCAA | UFO |
        AWOL | FIFA | CEO | DVD | HIV | WHO | IMF | UNHCR | PDF | JPEG | NAACP | OSHA | CAPTCHA"""
    ),
    "organization": _split(
        """World Health Organization | National Aeronautics and Space Administration |
        Federal Bureau of Investigation | United Nations Children's Fund |
        North Atlantic Treaty Organization | Organization of the Petroleum Exporting Countries |
        International Olympic Committee | European Central Bank | International Monetary Fund |
        World Trade Organization | Environmental Protection Agency |
        Securities and Exchange Commission | American Medical Association |
        Federal Aviation Administration | Internal Revenue Service |
        Central Intelligence Agency | National Basketball Association |
        British Broadcasting Corporation | Food and Drug Administration |
        International Atomic Energy Agency"""
    ),
    "concept": _split(
        """democracy | entropy | photosynthesis | irony | inflation | a sonnet | osmosis |
        a black hole | stoicism | a haiku | utilitarianism | a metaphor | gravity | nostalgia |
        karma | a recession | the placebo effect | existentialism | a palindrome |
        opportunity cost"""
    ),
    "word": _split(
        """serendipity | ubiquitous | ephemeral | quixotic | laconic | schadenfreude | melancholy |
        gregarious | obfuscate | hubris | zeitgeist | petrichor | wanderlust | candor | sanguine |
        pragmatic | esoteric | magnanimous"""
    ),
    "phenomenon": _split(
        """is the sky blue | do cats purr | do leaves change color in autumn |
        do onions make people cry | does ice float on water | do birds migrate south |
        do people yawn | do stars twinkle | is the ocean salty | do humans dream |
        do cats land on their feet | does bread go stale | do our ears pop on airplanes |
        do zebras have stripes | is the Dead Sea so salty"""
    ),
    "device": _split(
        """a refrigerator | a microwave oven | a jet engine | a solar panel | a compass |
        a thermostat | a barometer | a vaccine | a nuclear reactor | a credit card |
        a touch screen | a hearing aid | an electric motor | a smoke detector | a pendulum clock"""
    ),
    "custom": _split(
        """the Olympic Games | April Fools' Day | Halloween | the handshake |
        the phrase 'break a leg' | the word 'sandwich' | the Christmas tree | the wedding ring |
        the game of chess | the tradition of birthday cakes | the phrase 'once in a blue moon' |
        the custom of tipping"""
    ),
    "activity": _split(
        """make a paper airplane | tie a bowline knot | cook risotto | remove a wine stain |
        grow tomatoes indoors | fix a flat tire | brew green tea | start a compost pile |
        train a puppy to sit | tune a guitar | change a car battery | write a haiku"""
    ),
    "pair": _split(
        """weather and climate | a virus and a bacterium | an alligator and a crocodile |
        a hurricane and a typhoon | empathy and sympathy | a comet and an asteroid |
        a lake and a pond | baking soda and baking powder | a simile and a metaphor |
        a republic and a democracy | a cello and a viola | a frog and a toad"""
    ),
    "cause_of": _split(
        """earthquakes | tides | the northern lights | hiccups | rainbows | thunder | jet lag |
        acid rain | tsunamis | inflation | the seasons | sunburn | static electricity"""
    ),
    "symbol": _split(
        """a four-leaf clover | the olive branch | the yin and yang symbol | a red rose |
        the owl in Greek mythology | the lotus flower | a white flag | the number thirteen |
        the caduceus | a rainbow flag"""
    ),
    "animal": _split(
        """a platypus | an axolotl | a pangolin | a narwhal | an okapi | a quokka | a wombat |
        a manatee | a tapir | an aardvark | a capybara | a gecko | a lemur | an ocelot | a dingo |
        a cassowary | a dugong | a kinkajou"""
    ),
    "instrument": _split(
        """a sitar | a bassoon | a theremin | an oboe | a harpsichord | a didgeridoo | a banjo |
        a marimba | a bagpipe | a zither | an accordion | a koto | a balalaika | a glockenspiel |
        a mandolin | a shamisen"""
    ),
    "colored_thing": _split(
        """a flamingo | a ruby | an emerald | the planet Mars | chlorophyll |
        a school bus in the United States | a male cardinal | jade | a polar bear's skin |
        a ripe lime | a sapphire | a canary | copper sulfate | the flag of Ireland"""
    ),
    "equipment": _split(
        """shuttlecock | puck | cue | wicket | hurley | foil | caber | lacrosse stick | discus |
        pommel horse | curling stone | jai alai basket"""
    ),
    "dish": _split(
        """guacamole | hummus | pesto | tzatziki | falafel | risotto | paella | miso soup |
        borscht | gazpacho | polenta | tabbouleh | ratatouille | kimchi | fondue | baba ghanoush"""
    ),
    "dog_trait": _split(
        """has a blue-black tongue | was bred to hunt badgers | is the smallest in the world |
        is famous for herding sheep | was bred to pull sleds in Siberia |
        has a ridge of hair along its back | is known for its wrinkled face |
        was bred to retrieve ducks"""
    ),
    "product_kind": _split(
        """video game | board game | car model | toy | smartphone | music album | camera |
        candy bar | breakfast cereal | video game console"""
    ),
    "country": _split(
        """Australia | Canada | Kenya | Peru | Norway | Vietnam | Morocco | Chile | Hungary |
        New Zealand | Egypt | Finland | Argentina | Thailand | Portugal | Nigeria | Mongolia |
        Iceland | Colombia | Turkey | Japan | Poland"""
    ),
    "tree_product": _split(
        """maple syrup | cork | acorns | natural rubber | cinnamon | chestnuts | frankincense |
        cashews | pine nuts | quinine"""
    ),
    "invention": _split(
        """telephone | printing press | light bulb | World Wide Web | polio vaccine |
        steam engine | cotton gin | periodic table | phonograph | safety pin | jet engine |
        bifocals | dynamite | typewriter | hot air balloon | stethoscope"""
    ),
    "book": _split(
        """Pride and Prejudice | War and Peace | The Odyssey | Don Quixote | Moby-Dick |
        One Hundred Years of Solitude | The Divine Comedy | Frankenstein | The Great Gatsby |
        Things Fall Apart | Leviathan | The Art of War | Hamlet | Beloved | Middlemarch |
        The Tale of Genji"""
    ),
    "painting": _split(
        """the Mona Lisa | The Starry Night | Guernica | The Night Watch |
        Girl with a Pearl Earring | The Persistence of Memory | The Scream |
        The Birth of Venus | American Gothic | Las Meninas | The Great Wave off Kanagawa"""
    ),
    "achievement": _split(
        """walk on the Moon | reach the South Pole | climb Mount Everest |
        fly solo across the Atlantic | swim the English Channel | orbit the Earth |
        win two Nobel Prizes | run a mile in under four minutes | circumnavigate the globe |
        reach the North Pole | travel into space | sail alone around the world"""
    ),
    "discovery": _split(
        """penicillin | radium | the electron | X-rays | the planet Uranus | insulin |
        the structure of DNA | oxygen | the moons of Jupiter | the neutron | pulsars |
        the Rosetta Stone"""
    ),
    "composition": _split(
        """The Four Seasons | the Moonlight Sonata | The Magic Flute | The Rite of Spring |
        Bolero | The Nutcracker | Clair de Lune | Rhapsody in Blue | The Planets | Messiah |
        the Brandenburg Concertos | Swan Lake"""
    ),
    "film": _split(
        """Casablanca | Psycho | Citizen Kane | Seven Samurai | Metropolis | Vertigo | Rashomon |
        Jaws | Spirited Away | Bicycle Thieves | The Seventh Seal | Nosferatu"""
    ),
    "scientist_deed": _split(
        """developed the theory of general relativity | formulated the laws of motion |
        proposed the heliocentric model | first described cells under a microscope |
        coined the term 'gene' | discovered the law of buoyancy |
        first measured the speed of sound | proposed the theory of continental drift |
        created the first vaccine | classified living things with two-part names"""
    ),
    "ordinal": _split("first | second | third | fourth | fifth | sixth"),
    "republic": _split(
        """the United States | France | Brazil | Kenya | Mexico | Finland | Ireland | Ghana |
        South Korea | Portugal"""
    ),
    "landmark": _split(
        """the Taj Mahal | Machu Picchu | the Great Barrier Reef | Angkor Wat | the Acropolis |
        Mount Kilimanjaro | Petra | the Alhambra | Stonehenge | the Atacama Desert | Lake Baikal |
        Chichen Itza | the Sistine Chapel | Uluru | the Giant's Causeway | Victoria Falls"""
    ),
    "famous": _split(
        """Mozart | Frida Kahlo | Albert Einstein | Marie Curie | Pablo Picasso | Nelson Mandela |
        Leonardo da Vinci | Jane Austen | Charles Darwin | Confucius | Ada Lovelace |
        Galileo Galilei | Cleopatra | Beethoven | Mahatma Gandhi | Napoleon Bonaparte |
        Florence Nightingale | Nikola Tesla"""
    ),
    "geo_superlative": _split(
        """largest desert in Asia | longest river in Europe | highest mountain in Africa |
        largest island in the Mediterranean | deepest lake in the world |
        largest city in Brazil | smallest country in Europe | highest waterfall in the world |
        largest lake in Africa | longest river in South America | largest country in Africa"""
    ),
    "wild_animal": _split(
        """kangaroos | giant pandas | Komodo dragons | emperor penguins | orangutans |
        snow leopards | lemurs | polar bears | bison | koalas | jaguars | kiwi birds"""
    ),
    "us_city": _split(
        """Denver | Omaha | Tucson | Boise | Savannah | Spokane | Albuquerque | Tulsa | Wichita |
        Des Moines | Burlington | Fargo"""
    ),
    "count_thing": _split(
        """bones are in the human body | players are on a soccer team |
        keys are on a standard piano | moons does Mars have | strings does a violin have |
        sides does a dodecagon have | hearts does an octopus have |
        teeth does an adult human have | states are in Australia |
        time zones does Russia have | chambers does the human heart have |
        legs does a spider have | squares are on a chessboard |
        cards are in a standard deck | minutes are in a week | bones are in a giraffe's neck"""
    ),
    "tall_thing": _split(
        """the Eiffel Tower | Mount Everest | the Statue of Liberty | the Burj Khalifa |
        an adult giraffe | the Great Pyramid of Giza | Big Ben | the CN Tower |
        the tallest redwood tree | Angel Falls | the Leaning Tower of Pisa"""
    ),
    "institution": _split(
        """Harvard University | the Red Cross | the United Nations | Oxford University |
        the Boy Scouts | the Nobel Foundation | the Royal Society | the World Bank |
        the Smithsonian Institution | the Louvre museum | the University of Bologna"""
    ),
    "event": _split(
        """the Berlin Wall fall | the Titanic sink | World War I end |
        the first Moon landing take place | the Chernobyl disaster occur |
        Columbus reach the Americas | the Great Fire of London start |
        the French Revolution begin | the Panama Canal open | the Wright brothers first fly"""
    ),
    "distance_pair": _split(
        """the Moon from the Earth | Paris from London | the Sun from Mars | Tokyo from Sydney |
        New York from Los Angeles | Cairo from Cape Town | Madrid from Rome |
        the Earth from Venus"""
    ),
    "heavy_thing": _split(
        """an adult blue whale | an African elephant | a gallon of water | a grizzly bear |
        the Statue of Liberty | a hummingbird | a standard bowling ball | a human brain |
        an Olympic shot put | a polar bear"""
    ),
    "substance": _split(
        "water | ethanol | mercury | liquid nitrogen | acetone | olive oil | sulfur | iron"
    ),
    "duration_thing": _split(
        """light to reach Earth from the Sun | the Moon to orbit the Earth |
        a tomato plant to bear fruit | glass to decompose | a broken bone to heal |
        Mars to orbit the Sun | a plastic bottle to break down | an oak tree to mature"""
    ),
}


def template_slots(template: str) -> list[str]:
    """The ``{slot}`` names in ``template``, in order."""
    return [field for _, field, _, _ in string.Formatter().parse(template) if field]


_SLOTS: dict[str, list[str]] = {
    template: template_slots(template) for group in TEMPLATES.values() for template in group
}


def make_question(rng: random.Random, label: str) -> str:
    """A random question whose coarse label is ``label``."""
    template = rng.choice(TEMPLATES[label])
    return template.format(**{slot: rng.choice(FILLERS[slot]) for slot in _SLOTS[template]})
