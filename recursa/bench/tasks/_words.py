"""Small built-in vocabularies and a seeded name generator shared by the task generators.

Nothing here is downloaded; the lists are short on purpose and only need to
be varied enough to make keys and names unique within one item.
"""

from __future__ import annotations

import random


def word_list(text: str, sep: str | None = None) -> tuple[str, ...]:
    """The non-empty, stripped items of ``text`` split on ``sep`` (whitespace by default)."""
    return tuple(part.strip() for part in text.split(sep) if part.strip())


ADJECTIVES: tuple[str, ...] = word_list(
    """
    abundant acidic adorable agile ancient angry anxious aquatic arctic ashamed automatic
    average bashful bitter bland blissful bold brave breezy brief bright brisk broken bumpy
    calm careful cautious cheerful chilly chubby clever cloudy clumsy colossal cool cosmic
    crispy crooked crowded cuddly curious curly damp dazzling decent delicate delightful dense
    dizzy dusty eager early earthy elastic elderly elegant empty enchanted endless energetic
    famous fancy fearless festive fierce filthy flaky fluffy foggy fragile frantic fresh
    friendly frozen funny fuzzy gentle giant gifted gigantic glamorous gleaming glossy golden
    graceful grumpy hairy handsome happy hasty hollow honest hot huge humble hungry icy
    innocent itchy jagged jolly juicy kind large lazy little lively lonely loud lucky lumpy
    magic majestic mellow messy mighty misty modern muddy mysterious narrow nervous nimble
    noisy obedient odd old orange ordinary polite proud purple quaint quick quiet rapid rare
    ratty red rich rough round rustic salty scary shaggy shiny short shy silent silly sleepy
    slimy slow small smooth soft sour sparkling spicy spotless square steady sticky stormy
    strange striped sturdy sunny swift tame tart tender thirsty tidy tiny tough tricky
    twinkling ugly uneven unusual upbeat vast velvet vivid wacky warm wary weary whimsical
    wicked wide wild windy wise witty wooden worried yellow young zany zealous
    """
)

NOUNS: tuple[str, ...] = word_list(
    """
    acorn actor airport album alligator anchor antelope apple apron arch armchair arrow
    attic avocado badge bagel balcony balloon bamboo banana banjo barn basket beacon beaver
    bicycle biscuit blanket blossom boat bonfire bottle boulder bracelet bridge broccoli
    bucket buffalo butterfly button cabin cactus camel candle canoe canyon carpet carrot
    castle caterpillar cathedral cello chair cherry chimney cloud clover coconut comet
    compass cookie cottage crayon cricket crystal cupboard daisy dolphin donkey dragon drum
    eagle easel elephant elevator engine falcon feather fern ferry fiddle flamingo flute
    fountain fox galaxy garden garlic geyser giraffe glacier goose grape guitar hammock
    harbor harp hedgehog helmet hill honey horizon iceberg igloo island jacket jaguar jar
    jellyfish kettle kite koala ladder lagoon lantern lemon lighthouse lily lizard lobster
    magnet mango maple marble meadow melon mitten monkey moose mountain mushroom napkin nest
    noodle oasis octopus olive orchard otter owl paddle pancake panda parrot peach pebble
    pelican pencil penguin pepper piano pillow pineapple pirate planet pocket pony pumpkin
    puzzle quilt rabbit raccoon radish rainbow raven river robot rocket saddle sailboat
    salmon sandal scarf seashell shovel skateboard sled snail spider sponge squirrel
    stapler starfish statue strawberry submarine sunflower swan sweater teapot telescope
    tiger tomato tornado tractor trumpet tulip turtle umbrella unicorn valley vase violin
    volcano wagon walnut walrus waterfall whale whistle windmill wizard yacht zebra
    """
)

_ONSETS = word_list("b bl br c ch d dr f fl g gr h j k kh l m n p pr qu r s sh st t th tr v w z")
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "i", "o", "ai", "ei", "ou")
_CODAS = ("", "", "", "", "n", "r", "l", "s", "nd", "rk", "st", "m")


def syllable_word(rng: random.Random, syllables: int) -> str:
    """A pronounceable made-up word, capitalised: ``"Brovantel"``."""
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)]
    parts.extend(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables - 1))
    word = "".join(parts)
    return word[0].upper() + word[1:]


def near_miss(rng: random.Random, word: str) -> str:
    """``word`` with one vowel changed: ``"Brovantel"`` -> ``"Brovontel"``."""
    positions = [i for i, ch in enumerate(word) if ch in "aeiou"]
    if not positions:
        return word + rng.choice("aeiou")
    at = rng.choice(positions)
    replacement = rng.choice([v for v in "aeiou" if v != word[at]])
    return word[:at] + replacement + word[at + 1 :]
