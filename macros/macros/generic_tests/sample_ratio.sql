{#- Sample-ratio mismatch: fails when the records of `summary_model` are spread over its arms
    so unlike the declared shares that chance explains it with p < 0.001 (Pearson's chi-square
    above `critical`, the 0.999 quantile for arms - 1 degrees of freedom). A broken assignment
    (a changed salt, a key cast differently) shows here before anyone reads the test's result. -#}
{% test sample_ratio(model, summary_model, shares, critical) %}
    {{ return(adapter.dispatch('test_sample_ratio', 'mlsm')(model, summary_model, shares, critical)) }}
{% endtest %}

{% macro default__test_sample_ratio(model, summary_model, shares, critical) %}
with

counts as (

    select arm, count(*) as n
    from {{ model }}
    where summary_model = '{{ summary_model }}'
    group by arm

),

expected as (

    {%- for arm, share in shares %}
    select '{{ arm }}' as arm, {{ share }} as share{% if not loop.last %} union all{% endif %}
    {%- endfor %}

),

total as (

    select sum(n) as n from counts

),

chi_square as (

    select sum(
        (coalesce(counts.n, 0) - expected.share * total.n)
        * (coalesce(counts.n, 0) - expected.share * total.n)
        / (expected.share * total.n)
    ) as statistic
    from expected
    cross join total
    left join counts on counts.arm = expected.arm
    where total.n > 0

)

select statistic from chi_square where statistic > {{ critical }}
{% endmacro %}
