-- Web apps (issue 18): a browser tool served over HTTP behind the notebook proxy on the
-- session's own origin, without Jupyter's assumptions (the reconstruction studio first).
-- Like a job, a web app may take parameters (the dataset it opens).
alter table images drop constraint images_kind_check;
alter table images add constraint images_kind_check check (kind in ('desktop', 'notebook', 'job', 'webapp'));
alter table images drop constraint images_check;
alter table images add constraint images_kind_protocol check (
    (kind = 'desktop' and protocol = 'vnc')
    or (kind in ('notebook', 'webapp') and protocol = 'http')
    or (kind = 'job' and protocol = 'none'));
alter table images drop constraint images_check1;
alter table images add constraint images_parameter_schema_kind check (kind in ('job', 'webapp') or parameter_schema is null);

alter table sessions drop constraint sessions_kind_check;
alter table sessions add constraint sessions_kind_check check (kind in ('desktop', 'notebook', 'job', 'webapp'));

alter table remote_access drop constraint remote_access_kind_check;
alter table remote_access add constraint remote_access_kind_check check (kind in ('desktop', 'notebook', 'webapp'));
