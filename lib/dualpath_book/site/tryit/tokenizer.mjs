/* Caption -> word ids, by the rules `python -m dualpath.export` writes to tokenizer.json: the same ids
 * as dualpath.data.text (Vocabulary.encode, truncated and zero-padded). tests/book/test_tryit.py feeds every
 * Flickr8k test caption through both. An ES module: the page imports it, and Node in that test. */

// Every split character as a \u{...} escape: a literal "-", "]" or "\" would mean something else
// inside a character class.
function characterClass(chars) {
  return Array.from(chars, (c) => "\\u{" + c.codePointAt(0).toString(16) + "}").join("");
}

export function makeTokenizer(rules) {
  const split = new RegExp("[" + characterClass(rules.split_characters) + "]+", "u");
  const index = new Map(rules.words.map((word, i) => [word, i + 1]));
  const maxWords = rules.max_words;

  function words(caption) {
    const text = rules.lowercase ? caption.toLowerCase() : caption;
    return text.split(split).filter((w) => w.length > 0);
  }

  // tokens: every word with its id (0: not in the vocabulary, dropped) and whether it is read
  // (the first maxWords known words are); row: the text encoder's input, maxWords ids.
  function encode(caption) {
    let known = 0;
    const tokens = words(caption).map((word) => {
      const id = index.get(word) || 0;
      const read = id > 0 && known < maxWords;
      if (id > 0) known += 1;
      return { word, id, read };
    });
    const ids = tokens.filter((t) => t.read).map((t) => t.id);
    const row = ids.concat(new Array(maxWords - ids.length).fill(0));
    return { tokens, ids, row };
  }

  return { words, encode, maxWords, vocabularySize: rules.words.length };
}

