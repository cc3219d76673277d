-- Each chat keeps its list entry (`ChatTitleIdResponse`) as JSON text, kept current by a trigger, so a page
-- of the chat list is a concatenation instead of sixty JSON objects built per request.
ALTER TABLE chats ADD COLUMN item text;
-- Ids are compared byte-wise (they tie-break every list order; locale-aware comparison costs far more).
ALTER TABLE chats ALTER COLUMN id TYPE text COLLATE "C", ALTER COLUMN user_id TYPE text COLLATE "C";
ALTER TABLE shared_chats ALTER COLUMN chat_id TYPE text COLLATE "C";
ALTER TABLE share_grants ALTER COLUMN chat_id TYPE text COLLATE "C";
CREATE FUNCTION chat_list_item() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.item := json_build_object('id', NEW.id, 'title', NEW.title, 'updated_at', NEW.updated_at, 'created_at', NEW.created_at, 'last_read_at', NEW.last_read_at, 'snippet', NULL, 'active', false, 'archived', false)::text; RETURN NEW; END $$;
CREATE TRIGGER chats_list_item BEFORE INSERT OR UPDATE OF id, title, updated_at, created_at, last_read_at ON chats
    FOR EACH ROW EXECUTE FUNCTION chat_list_item();
UPDATE chats SET title = title;
