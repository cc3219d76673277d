-- Each user's own template variables (`/api/v1/users/user/variables`).
ALTER TABLE users ADD COLUMN variables jsonb;
