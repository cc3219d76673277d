-- The extracted text moves out of `data` into its own column: lists (which leave it out) then read small rows,
-- and a status change no longer rewrites (and compresses again) the whole text inside the JSON document.
ALTER TABLE files ADD COLUMN content text;
UPDATE files SET content = data ->> 'content', data = data - 'content' WHERE data ? 'content';
