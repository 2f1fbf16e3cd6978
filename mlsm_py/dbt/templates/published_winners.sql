-- depends_on: {{ ref('scores') }}
{{ config(alias='winners') }}

with

winners as (

    select * from {{ ref('winners') }}

)

select * from winners
