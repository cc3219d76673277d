-- Hidden chats (a note's assistant chats: `meta.internal` true) stay out of chat lists, counts and searches, as
-- in the original; a stored column keeps that test cheap in the list queries.
ALTER TABLE chats ADD COLUMN internal boolean GENERATED ALWAYS AS (coalesce((meta ->> 'internal') = 'true', false)) STORED;
